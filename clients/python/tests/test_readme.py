"""The README's tour shows real answers: its curl request and its Python example are run
against a live daemon and must print exactly what the README says they print (an answer
shown to a newcomer that the code no longer gives is a bug in one or the other)."""

import contextlib
import io
import json
import os
import re
import urllib.request

from conftest import ROOT

README = open(os.path.join(ROOT, "README.md")).read()


def test_curl_example_answers_what_the_readme_shows(url):
    m = re.search(r"curl -s http://127\.0\.0\.1:8000(\S+) -d '(.*?)'\n```\n\n```json\n(.*?)\n```",
                  README, re.S)
    assert m, "the README's curl example and its answer were not found"
    path, body, shown = m.groups()
    req = urllib.request.Request(url + path, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        got = resp.read().decode()
    assert json.loads(got) == json.loads(shown)


def test_python_example_prints_what_the_readme_shows(url):
    m = re.search(r"```python\n(import numpy as np\nfrom yololoss import YoloLossClient\n.*?)```"
                  r"\n\n```\n(.*?)\n```", README, re.S)
    assert m, "the README's Python example and its output were not found"
    code, shown = m.groups()
    assert "http://127.0.0.1:8000" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8000", url), "README.md", "exec"), {})
    assert out.getvalue().strip() == shown.strip()
