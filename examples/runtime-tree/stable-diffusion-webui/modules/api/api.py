"""webui v1.10.1 modules/api/api.py: the /sdapi/v1 routes the sdworker tests use, with webui's auth.

Credentials come only from ``--api-auth user:pass[,...]`` (Api.__init__); without it every route is open.
gradio's login does not guard these routes. txt2img and POST options read ``shared.sd_model``/write
config.json like webui; txt2img blocks on the model load exactly where webui does.
"""

import base64
import io
from secrets import compare_digest
from threading import Lock
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from modules import sd_models, shared
from modules.shared_cmd_options import cmd_opts


class Api:
    """api.Api: routes added with ``dependencies=[Depends(self.auth)]`` only when --api-auth is set."""

    def __init__(self, app: FastAPI, queue_lock: Lock) -> None:
        self.credentials: dict[str, str] = {}
        if cmd_opts.api_auth:
            for auth in cmd_opts.api_auth.split(","):
                user, password = auth.split(":")
                self.credentials[user] = password
        self.app = app
        self.queue_lock = queue_lock
        self.add_api_route("/sdapi/v1/txt2img", self.text2imgapi, methods=["POST"])
        self.add_api_route("/sdapi/v1/options", self.get_config, methods=["GET"])
        self.add_api_route("/sdapi/v1/options", self.set_config, methods=["POST"])
        self.add_api_route("/sdapi/v1/cmd-flags", lambda: vars(cmd_opts), methods=["GET"])
        self.add_api_route("/sdapi/v1/sd-models", self.get_sd_models, methods=["GET"])

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        if cmd_opts.api_auth:
            self.app.add_api_route(path, endpoint, dependencies=[Depends(self.auth)], **kwargs)
        else:
            self.app.add_api_route(path, endpoint, **kwargs)

    def auth(self, credentials: HTTPBasicCredentials = Depends(HTTPBasic())) -> bool:  # noqa: B008
        """api.Api.auth(): HTTP Basic, compare_digest on the password."""
        if credentials.username in self.credentials and compare_digest(
            credentials.password, self.credentials[credentials.username]
        ):
            return True
        raise HTTPException(
            status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"}
        )

    def get_sd_models(self) -> list[dict[str, Any]]:
        """api.Api.get_sd_models(): the checkpoint list, without touching the model."""
        return [
            {
                "title": x.title,
                "model_name": x.model_name,
                "hash": x.shorthash,
                "sha256": x.sha256,
                "filename": x.filename,
                "config": None,
            }
            for x in sd_models.checkpoints_list.values()
        ]

    def get_config(self) -> dict[str, Any]:
        """api.Api.get_config(): the settings."""
        return dict(shared.opts.data)

    def set_config(self, req: dict[str, Any]) -> None:
        """api.Api.set_config(): unknown checkpoint -> error; else set and opts.save(config.json)."""
        name = req.get("sd_model_checkpoint")
        if name is not None and name not in sd_models.checkpoints_list:
            raise RuntimeError(f"model {name!r} not found")
        for k, v in req.items():
            shared.opts.set(k, v)
        shared.opts.save(shared.config_filename)

    def text2imgapi(self, req: dict[str, Any]) -> dict[str, Any]:
        """api.Api.text2imgapi(): under queue_lock, processing reads shared.sd_model (blocking on a load)."""
        from PIL import Image

        with self.queue_lock:
            sd_model = shared.sd_model
            if sd_model is None:  # webui: processing fails on a None model (AttributeError -> 500)
                raise RuntimeError("'NoneType' object has no attribute 'sd_checkpoint_info'")
            prompt = str(req.get("prompt", ""))
            width = max(8, min(int(req.get("width", 64)), 64))
            height = max(8, min(int(req.get("height", 64)), 64))
            ids = sd_model.tokenizer(prompt)["input_ids"]
            weights = next(iter(sd_model.state_dict.values())).ravel()
            image = Image.new("RGB", (width, height))
            image.putdata(
                [
                    (
                        ids[(x + y) % len(ids)] % 256,
                        int((weights[(x * y) % weights.size] + 1) * 127) % 256,
                        (x * 255) // width,
                    )
                    for y in range(height)
                    for x in range(width)
                ]
            )
            buf = io.BytesIO()
            image.save(buf, format="PNG")
        return {
            "images": [base64.b64encode(buf.getvalue()).decode()],
            "parameters": req,
            "info": f"model: {sd_model.sd_checkpoint_info.title}",
        }

    def launch(self, server_name: str | None, port: int) -> None:
        """api.Api.launch(): uvicorn.run on the app (blocking), --nowebui's server."""
        import uvicorn

        uvicorn.run(self.app, host=server_name or "127.0.0.1", port=port, log_level="warning")
