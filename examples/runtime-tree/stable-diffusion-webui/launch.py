"""Stand-in for stable-diffusion-webui v1.10.1's launch.py (the offline example runtime tree).

The real webui cannot run here (no torch, no GPU, no GitHub), so this tree reproduces the start-up steps
that decide whether a pod serves, with the libraries webui uses for them (GitPython, FastAPI/starlette,
uvicorn, safetensors, transformers, Pillow). Each function names the webui file and function it
reproduces; none of webui's code is copied. What it does not do: diffusion (txt2img paints a small PNG
from the prompt's CLIP token ids and the checkpoint's tensor), gradio's component tree, torch.
"""

import argparse
import shlex
import sys

from modules import paths_internal  # noqa: F401 - appends $COMMANDLINE_ARGS to sys.argv, as webui does


def launch_args() -> argparse.Namespace:
    """modules/launch_utils.py module level: ``args, _ = cmd_args.parser.parse_known_args()``.

    The launcher tolerates unknown flags; webui.py's full parse (modules/shared_cmd_options.py) does not.
    """
    from modules import cmd_args

    args, _ = cmd_args.parser.parse_known_args()
    return args


def start() -> None:
    """modules/launch_utils.py start(): import webui, then api_only() under --nowebui, else webui()."""
    print(
        f"Launching {'API server' if '--nowebui' in sys.argv else 'Web UI'} with arguments: "
        f"{shlex.join(sys.argv[1:])}"
    )
    import webui

    if "--nowebui" in sys.argv:
        webui.api_only()
    else:
        webui.webui()


def main() -> None:
    """launch.py main(): prepare_environment() unless --skip-prepare-environment, then start().

    Preparing the environment means pip installs and git clones, which need the network and a writable
    tree; the stand-in refuses to start without the flag instead of pretending to do them.
    """
    args = launch_args()
    if not args.skip_prepare_environment:
        sys.exit(
            "prepare_environment() would pip-install and git-clone (modules/launch_utils.py): "
            "pass --skip-prepare-environment on a read-only runtime without network"
        )
    start()


if __name__ == "__main__":
    main()
