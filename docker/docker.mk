# Container targets (podman; docker works with DOCKER=docker for the image targets). Not part
# of `make test`: they need podman (../shared/tools/container-base.sh sets it up on a machine
# without a Docker engine) and take minutes.
#   make docker-image           build $(DOCKER_IMAGE) from docker/Dockerfile
#   make docker-test            build, run, check health, a real batch against the numpy
#                               reference, SIGTERM -> exit 0, history kept in the volume
#   make docker-compose-test    docker/compose.yaml: 3 replicas behind HAProxy, PostgreSQL,
#                               Prometheus; requests spread, every replica scraped, a
#                               replica killed and all restarted under a training loop
# DOCKER_CONTEXT: the source tree to build (default: this one).
DOCKER ?= podman
DOCKER_IMAGE ?= localhost/yololoss:latest
DOCKER_CONTEXT ?= .
DOCKER_TESTS ?= test-core test-core-python test-server
DOCKER_BUILD_FLAGS ?=
DOCKER_BUILD = $(DOCKER) build --pull=never --format docker \
  --ignorefile docker/Dockerfile.dockerignore $(DOCKER_BUILD_FLAGS)

.PHONY: docker-image docker-images docker-test docker-compose-test
# The dashboard's npm packages are installed here (server.mk's rule) and sent with the context.
DOCKER_DASH_NPM := $(wildcard server/monitor/dashboard/package-lock.json)
docker-image: $(if $(DOCKER_DASH_NPM),server/monitor/dashboard/node_modules/.package-lock.json)
	$(DOCKER_BUILD) --build-arg TESTS="$(DOCKER_TESTS)" -f docker/Dockerfile \
	  -t $(DOCKER_IMAGE) $(DOCKER_CONTEXT)

# The images compose.yaml uses besides the daemon's, built from Debian's packages (no
# image can be pulled here).
docker-images: docker-image
	$(DOCKER_BUILD) -f docker/haproxy/Dockerfile -t localhost/yololoss-haproxy:latest docker/haproxy
	$(DOCKER_BUILD) -f docker/postgres/Dockerfile -t localhost/yololoss-postgres:latest docker/postgres
	$(DOCKER_BUILD) -f docker/prometheus/Dockerfile -t localhost/yololoss-prometheus:latest docker/prometheus

docker-test: docker-image
	DOCKER="$(DOCKER)" DOCKER_IMAGE="$(DOCKER_IMAGE)" PYTHON="$(PYTHON)" bash docker/test-image.sh

docker-compose-test: docker-images
	DOCKER="$(DOCKER)" DOCKER_IMAGE="$(DOCKER_IMAGE)" PYTHON="$(PYTHON)" bash docker/test-compose.sh
