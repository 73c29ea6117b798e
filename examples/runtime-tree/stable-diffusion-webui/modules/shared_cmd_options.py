"""webui v1.10.1 modules/shared_cmd_options.py: extensions' preload.py add flags, then a strict parse.

Preloads run for <data-dir>/extensions (as listed by launch_utils.list_extensions) and extensions-builtin;
then ``parser.parse_args()`` exits 2 on an unknown flag unless IGNORE_CMD_ARGS_ERRORS is set.
"""

import os

from modules import cmd_args, extensions
from modules.paths_internal import extensions_builtin_dir, extensions_dir

parser = cmd_args.parser

extensions.preload_extensions(extensions_dir, parser)
extensions.preload_extensions(extensions_builtin_dir, parser)

if os.environ.get("IGNORE_CMD_ARGS_ERRORS", None) is None:
    cmd_opts = parser.parse_args()
else:
    cmd_opts, _ = parser.parse_known_args()

cmd_opts.webui_is_non_local = any([cmd_opts.share, cmd_opts.listen, cmd_opts.ngrok, cmd_opts.server_name])
cmd_opts.disable_extension_access = (
    cmd_opts.webui_is_non_local and not cmd_opts.enable_insecure_extension_access
)
