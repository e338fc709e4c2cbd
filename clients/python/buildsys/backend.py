"""A minimal PEP 517 / PEP 660 build backend for the pure-Python package `yololoss`.

It exists so that `pip install ./clients/python` works offline on Debian's python3: the
usual backends (setuptools, flit, hatchling) would be downloaded into pip's isolated build
environment first. It packs yololoss/*.py into a py3-none-any wheel with the metadata
below; the version is read from yololoss/__init__.py.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

NAME = "yololoss"
SUMMARY = ("Client of yololossd: the keras-yolo3 YOLOv3 loss and its gradient over the "
           "Open Inference Protocol v2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, NAME)


def _version():
    with open(os.path.join(PKG, "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not m:
        raise RuntimeError("no __version__ in yololoss/__init__.py")
    return m.group(1)


def _metadata():
    return ("Metadata-Version: 2.1\n"
            "Name: %s\n"
            "Version: %s\n"
            "Summary: %s\n"
            "Requires-Python: >=3.8\n"
            "Requires-Dist: numpy\n"
            "Provides-Extra: torch\n"
            'Requires-Dist: torch; extra == "torch"\n' % (NAME, _version(), SUMMARY))


def _sources():
    """(archive name, path) of every module of the package, sorted."""
    out = []
    for name in sorted(os.listdir(PKG)):
        if name.endswith(".py"):
            out.append(("%s/%s" % (NAME, name), os.path.join(PKG, name)))
    return out


def _dist_info():
    return "%s-%s.dist-info" % (NAME, _version())


def _write_metadata_dir(directory):
    d = os.path.join(directory, _dist_info())
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    return os.path.basename(d)


def _wheel(wheel_directory, files):
    """files: list of (archive name, bytes). Adds the dist-info and RECORD."""
    info = _dist_info()
    wheel_meta = ("Wheel-Version: 1.0\nGenerator: yololoss-buildsys\n"
                  "Root-Is-Purelib: true\nTag: py3-none-any\n")
    files = list(files) + [
        (info + "/METADATA", _metadata().encode()),
        (info + "/WHEEL", wheel_meta.encode()),
        (info + "/top_level.txt", (NAME + "\n").encode()),
    ]
    record = []
    for name, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append("%s,sha256=%s,%d" % (name, digest.decode(), len(data)))
    record.append(info + "/RECORD,,")
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    fname = "%s-%s-py3-none-any.whl" % (NAME, _version())
    with zipfile.ZipFile(os.path.join(wheel_directory, fname), "w",
                         zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return fname


# ---- PEP 517 ------------------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = []
    for arc, path in _sources():
        with open(path, "rb") as f:
            files.append((arc, f.read()))
    return _wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a .pth file that puts this source tree on sys.path."""
    return _wheel(wheel_directory, [("_yololoss_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, _version())
    fname = base + ".tar.gz"
    members = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
               ("buildsys/backend.py", os.path.join(ROOT, "buildsys", "backend.py"))]
    members += _sources()
    with tarfile.open(os.path.join(sdist_directory, fname), "w:gz") as t:
        for arc, path in members:
            t.add(path, arcname=base + "/" + arc)
        pkg_info = _metadata().encode()
        ti = tarfile.TarInfo(base + "/PKG-INFO")
        ti.size = len(pkg_info)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(pkg_info))
    return fname
