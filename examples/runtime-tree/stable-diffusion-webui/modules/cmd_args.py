"""The command-line flags of webui v1.10.1 (modules/cmd_args.py) that the sdworker operator renders, that
users pass in examples, and the ones the tests exercise; argparse rejects anything else as webui does.

Defaults follow cmd_args.py: settings files under --data-dir, --gradio-allowed-path defaulting to the data
dir, --hypernetwork-dir under the models dir, --embeddings-dir under the data dir. ``--lora-dir`` is not
here: webui defines it in extensions-builtin/Lora/preload.py, which this tree carries too.
"""

import argparse
import os

from modules.paths_internal import data_path, models_path, normalized_filepath, script_path

parser = argparse.ArgumentParser()

for _flag in (
    # launch.py arguments
    "--skip-python-version-check",
    "--skip-torch-cuda-test",
    "--skip-prepare-environment",
    "--skip-install",
    "--skip-version-check",
    "--dump-sysinfo",
    # webui arguments
    "--no-download-sd-model",
    "--no-hashing",
    "--do-not-download-clip",
    "--listen",
    "--share",
    "--api",
    "--api-log",
    "--nowebui",
    "--xformers",
    "--xformers-flash-attention",
    "--opt-sdp-attention",
    "--enable-insecure-extension-access",
    "--disable-all-extensions",
    "--disable-extra-extensions",
    "--skip-load-model-at-start",
    "--no-half",
    "--no-half-vae",
    "--medvram",
    "--lowvram",
):
    parser.add_argument(_flag, action="store_true")

parser.add_argument(
    "--data-dir",
    type=normalized_filepath,
    default=os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
)
parser.add_argument("--models-dir", type=normalized_filepath, default=None)
parser.add_argument("--ckpt", type=normalized_filepath, default=os.path.join(script_path, "model.ckpt"))
parser.add_argument("--ckpt-dir", type=normalized_filepath, default=None)
parser.add_argument("--vae-dir", type=normalized_filepath, default=None)
parser.add_argument(
    "--embeddings-dir", type=normalized_filepath, default=os.path.join(data_path, "embeddings")
)
parser.add_argument(
    "--hypernetwork-dir", type=normalized_filepath, default=os.path.join(models_path, "hypernetworks")
)
parser.add_argument("--port", type=int, default=None)
parser.add_argument("--server-name", type=str, default=None)
parser.add_argument("--ui-config-file", type=str, default=os.path.join(data_path, "ui-config.json"))
parser.add_argument("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))
parser.add_argument("--styles-file", type=str, action="append", default=[])
parser.add_argument("--gradio-auth", type=str, default=None)
parser.add_argument("--gradio-auth-path", type=normalized_filepath, default=None)
parser.add_argument("--gradio-allowed-path", action="append", default=[data_path])
parser.add_argument("--api-auth", type=str, default=None)
parser.add_argument("--ngrok", type=str, default=None)
parser.add_argument("--subpath", type=str, default=None)
