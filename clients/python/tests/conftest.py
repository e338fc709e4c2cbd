"""Fixtures: a live yololossd on an ephemeral port (YL_DAEMON, default build/yololossd),
and the project's numpy reference (tests/reference) for the expected answers.

    YL_DAEMON=build/yololossd /usr/bin/python3 -m pytest -q clients/python/tests
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))                 # the package under test
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))  # make_golden, yolo_reference

DAEMON = os.environ.get("YL_DAEMON", os.path.join(ROOT, "build", "yololossd"))
if not os.path.isabs(DAEMON):
    DAEMON = os.path.join(ROOT, DAEMON)


class Daemon:
    """yololossd started with extra flags on 127.0.0.1, port 0; .url once listening."""

    def __init__(self, *flags):
        if not os.access(DAEMON, os.X_OK):
            pytest.fail("%s is not built (make build/yololossd)" % DAEMON)
        self.proc = subprocess.Popen([DAEMON, "--host", "127.0.0.1", "--port", "0"]
                                     + list(flags), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                return
        self.stop()
        pytest.fail("yololossd did not start: %s" % "".join(lines))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture(scope="session")
def daemon():
    d = Daemon("--threads", "2")
    yield d
    d.stop()


@pytest.fixture(scope="session")
def url(daemon):
    return daemon.url
