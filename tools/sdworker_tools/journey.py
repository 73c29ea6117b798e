"""What a user checks once SD replicas are Ready: webui answers through the pod's port, with credentials.

The pod runner runs each SD pod as a real process in its own network namespace; ``PodRunner.forward`` is
this rig's ``kubectl port-forward``. Through it, for every Ready pod: readiness says the model is loaded,
``/sdapi/v1/sd-models`` refuses a request without credentials (401) and lists the model with the API
credentials of the Secret the pod mounts (200), and after the UI login every ``file=`` asset the UI page
links answers 200 (webui links its JavaScript and CSS relative to its working directory). The demo and the
user-journey test share these checks, so what the demo shows is what the test asserts.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    api: tuple[str, str]
    ui: tuple[str, str]

    @classmethod
    def from_secret(cls, secret: Json) -> Credentials:
        """The first ``user:password`` of each key of the webui Secret (``stringData``, as applied)."""
        data = secret.get("stringData") or {}

        def first(key: str) -> tuple[str, str]:
            entry = str(data[key]).replace(",", "\n").splitlines()[0]
            user, _, password = entry.strip().partition(":")
            return user, password

        return cls(api=first("api-auth"), ui=first("gradio-auth"))


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
    form: dict[str, str] | None = None,
    cookie: str | None = None,
    timeout: float = 20.0,
) -> Answer:
    headers: dict[str, str] = {}
    body: bytes | None = None
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie is not None:
        headers["Cookie"] = cookie
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Answer(
            resp.status, resp.read().decode(errors="replace"), {k.lower(): v for k, v in resp.getheaders()}
        )
    finally:
        conn.close()


def ui_assets(html: str) -> list[str]:
    """The ``file=`` links of the UI page (scripts and stylesheets)."""
    links = [part.split('"')[0] for marker in ('src="', 'href="') for part in html.split(marker)[1:]]
    return [link for link in links if link.startswith("file=")]


def check_serving(port: int, model: str, creds: Credentials) -> list[str]:
    """Problems found talking to one pod through ``port`` (empty: it serves as a user expects)."""
    problems: list[str] = []
    ready = request(port, "/sdworker/ready")
    if ready.status != 200 or json.loads(ready.body).get("model") != model:
        problems.append(f"/sdworker/ready: {ready.status} {ready.body[:200]}")
    anonymous = request(port, "/sdapi/v1/sd-models")
    if anonymous.status != 401:
        problems.append(f"/sdapi/v1/sd-models without credentials: {anonymous.status}, expected 401")
    models = request(port, "/sdapi/v1/sd-models", auth=creds.api)
    if models.status != 200 or model not in [m.get("title") for m in json.loads(models.body or "[]")]:
        problems.append(f"/sdapi/v1/sd-models with credentials: {models.status} {models.body[:200]}")
    login = request(port, "/login", method="POST", form={"username": creds.ui[0], "password": creds.ui[1]})
    cookie = login.headers.get("set-cookie", "").split(";")[0]
    if login.status != 200 or not cookie:
        return [*problems, f"UI login: {login.status} {login.body[:200]}"]
    assets = ui_assets(request(port, "/", cookie=cookie).body)
    if not assets:
        problems.append("the UI page links no file= assets")
    for asset in assets:
        answer = request(port, "/" + asset, cookie=cookie)
        if answer.status != 200:
            problems.append(f"UI asset {asset.split('?')[0]}: {answer.status}")
    return problems
