"""Stand-in for stable-diffusion-webui's launch.py in the offline example runtime tree.

The real file comes from AUTOMATIC1111/stable-diffusion-webui at the ref in examples/runtime.yaml. This one
accepts the same command line the operator renders, answers the endpoints its probes use (/internal/ping,
and /sdapi/v1/sd-models listing the --ckpt-dir models) and needs nothing but the standard library, so the
example tree stays a few KB and works without a GPU.
"""

import argparse
import http.server
import json
import pathlib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--ckpt-dir", default=str(pathlib.Path(__file__).parents[1] / "models/Stable-diffusion")
    )
    args, _ = parser.parse_known_args()
    models = sorted(pathlib.Path(args.ckpt_dir).glob("*.safetensors"))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/internal/ping":
                body: object = {}
            elif self.path == "/sdapi/v1/sd-models":
                body = [{"title": m.name, "model_name": m.stem, "filename": str(m)} for m in models]
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    host = "0.0.0.0" if args.listen else "127.0.0.1"
    http.server.ThreadingHTTPServer((host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
