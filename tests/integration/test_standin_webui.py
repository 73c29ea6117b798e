"""The stand-in webui fails where webui v1.10.1 fails on a GKE node, and serves once the pod contract is met.

Each test starts examples/runtime-tree's stand-in (assembled by sdworker_tools.standin_runtime.assemble)
with Python 3.10 as the pod would: in its own mount and network namespace (loopback only), the tree bound
read-only at /mnt/runtime, an emptyDir-like /mnt/data owned by uid 10001, the Secret files at
/mnt/secrets, a read-only /tmp (readOnlyRootFilesystem), the host's git hidden, as uid/gid 10001. Requests
are made from inside that network namespace (nsenter). Each issue-12 item is shown failing with the old
contract and working with the new one. Needs root (namespaces, mounts) and pyenv's 3.10.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sdworker.runtime_layout import FAST_START_FLAGS
from sdworker_tools import procs, standin_runtime
from sdworker_tools.wait import Abort, wait_for

PY310 = Path("/root/.pyenv/versions/3.10.13")
UID = 10001
PORT = 7860
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (PY310 / "bin" / "python3.10").exists(),
    reason="needs root (namespaces, mounts) and pyenv's Python 3.10.13",
)
RT, DATA, SECRETS = "/mnt/runtime", "/mnt/data", "/mnt/secrets/webui-auth"
FAST = list(FAST_START_FLAGS)  # the flags the operator renders (the SD pod contract)
MODELS = f"{RT}/models"
ARGS = [
    *FAST,
    "--data-dir",
    DATA,
    "--ckpt-dir",
    f"{MODELS}/Stable-diffusion",
    "--ckpt",
    f"{MODELS}/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
    "--lora-dir",
    f"{MODELS}/Lora",
    "--vae-dir",
    f"{MODELS}/VAE",
    "--embeddings-dir",
    f"{MODELS}/embeddings",
    "--hypernetwork-dir",
    f"{MODELS}/hypernetworks",
    "--listen",
    "--port",
    str(PORT),
    "--gradio-auth-path",
    f"{SECRETS}/gradio-auth",
    "--api",
    "--xformers",
]
# The pod contract's environment (pod-contract.md) plus HUGGINGFACE_HUB_CACHE: transformers 4.30.2 reads
# that (or TRANSFORMERS_CACHE / HF_HOME), not HF_HUB_CACHE (transformers/utils/hub.py module level).
FIXED_ENV = {
    "GIT_PYTHON_REFRESH": "quiet",
    "HF_HUB_CACHE": f"{RT}/huggingface/hub",
    "HUGGINGFACE_HUB_CACHE": f"{RT}/huggingface/hub",
    "HF_HOME": f"{DATA}/huggingface",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TMPDIR": DATA,
    "GRADIO_TEMP_DIR": f"{DATA}/gradio",
    "SDWORKER_API_AUTH_FILE": f"{SECRETS}/api-auth",
}
IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/home/sd",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
GIT_HIDDEN = [p for p in {shutil.which("git", path=d) for d in IMAGE_ENV["PATH"].split(":")} if p]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The contract's tree, and trees missing config_states / with the extension in extensions/."""
    base = tmp_path_factory.mktemp("trees")
    return {
        "fixed": standin_runtime.assemble(base / "fixed"),
        "no-config-states": standin_runtime.assemble(base / "ncs", config_states=False),
        "ext-in-extensions": standin_runtime.assemble(base / "ext", extension_parent="extensions"),
        "no-model-dirs": standin_runtime.assemble(base / "nmd", model_dirs=False),
    }


@dataclass
class Pod:
    proc: procs.Process
    data: Path
    secrets: Path

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        auth: str | None = None,
        body: object = None,
        cookie: str | None = None,
        form: str | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """One HTTP request from inside the pod's network namespace."""
        script = (
            "import base64,json,sys,urllib.request,urllib.error\n"
            "a=json.loads(sys.argv[1]);h={}\n"
            "if a['auth']: h['Authorization']='Basic '+base64.b64encode(a['auth'].encode()).decode()\n"
            "if a['cookie']: h['Cookie']=a['cookie']\n"
            "d=None\n"
            "if a['body'] is not None: d=json.dumps(a['body']).encode(); h['Content-Type']=a['json']\n"
            "if a['form'] is not None: d=a['form'].encode(); h['Content-Type']=a['urlenc']\n"
            "r=urllib.request.Request(a['url'],data=d,headers=h,method=a['method'])\n"
            "try: resp=urllib.request.urlopen(r,timeout=a['timeout'])\n"
            "except urllib.error.HTTPError as e: resp=e\n"
            "print(json.dumps([resp.status, resp.read().decode('latin-1'), dict(resp.headers)]))\n"
        )
        args = {
            "url": f"http://127.0.0.1:{PORT}{path}",
            "method": method,
            "auth": auth,
            "body": body,
            "cookie": cookie,
            "form": form,
            "timeout": 20,
            "json": "application/json",
            "urlenc": "application/x-www-form-urlencoded",
        }
        out = procs.run(
            [
                "nsenter",
                f"--net=/proc/{self.proc.pid}/ns/net",
                "/usr/bin/python3",
                "-c",
                script,
                json.dumps(args),
            ],
            timeout=30,
        )
        status, text, headers = json.loads(out.stdout)
        return int(status), text, headers

    def wait_serving(self) -> None:
        def up() -> bool:
            if not self.proc.alive():
                raise Abort(f"the stand-in exited:\n{self.proc.log_tail(40)}")
            return self.request("/internal/ping")[0] == 200

        wait_for(up, timeout=60, what="the stand-in to serve /internal/ping", describe=self.proc.log_tail)

    def wait_exit(self) -> str:
        wait_for(
            lambda: not self.proc.alive(),
            timeout=60,
            what="the stand-in to exit",
            describe=self.proc.log_tail,
        )
        return self.proc.log_tail(60)


@dataclass
class PodFactory:
    tmp: Path
    trees: dict[str, Path]
    started: list[Pod] = field(default_factory=list)

    def start(
        self,
        *,
        tree: str = "fixed",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        secret_mode: int = 0o440,
        cwd: str = f"{RT}/stable-diffusion-webui",
    ) -> Pod:
        n = len(self.started)
        data, secrets = self.tmp / f"data{n}", self.tmp / f"secrets{n}"
        data.mkdir()
        os.chown(data, UID, UID)  # emptyDir with fsGroup
        secrets.mkdir()
        for key, content in (("gradio-auth", "alice:wonder\n"), ("api-auth", "api:s3cret\n")):
            (secrets / key).write_text(content)
            os.chown(secrets / key, 0, UID if secret_mode & 0o040 else 0)  # kubelet: root, group fsGroup
            os.chmod(secrets / key, secret_mode)
        env = {
            **IMAGE_ENV,
            **(FIXED_ENV if env is None else env),
            "PYTHONPATH": f"{RT}/{standin_runtime.SITE_PACKAGES}",
        }
        inner = [
            "set -e",
            "mount --make-rprivate /",
            f"mkdir -p {self.tmp}/py && mount --bind -o ro {PY310} {self.tmp}/py",
            "mount -t tmpfs -o mode=755 tmpfs /root",  # pyenv's libpython RUNPATH is under /root (0700)
            f"mkdir -p {PY310} && mount --bind -o ro {self.tmp}/py {PY310}",
            "mount -t tmpfs -o mode=755 tmpfs /mnt",
            f"mkdir -p {RT} {DATA} {SECRETS} /mnt/home",
            f"mount --bind -o ro {self.trees[tree]} {RT}",
            f"mount --bind {data} {DATA}",
            f"mount --bind -o ro {secrets} {SECRETS}",
            *(f"mount --bind /dev/null {g}" for g in GIT_HIDDEN),  # the base image has no git
            "mount -t tmpfs -o ro tmpfs /tmp",
            "mount -t tmpfs -o ro tmpfs /var/tmp",
            "ip link set lo up",
            f"cd {shlex.quote(cwd)}",
            "exec setpriv --reuid 10001 --regid 10001 --groups 10001 env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
            + f" {PY310}/bin/python3.10 -s {RT}/stable-diffusion-webui/launch.py "
            + " ".join(shlex.quote(a) for a in (ARGS if args is None else args)),
        ]
        proc = procs.Process(
            f"standin-{n}",
            ["unshare", "--mount", "--net", "sh", "-c", "\n".join(inner)],
            self.tmp / f"standin-{n}.log",
        )
        pod = Pod(proc, data, secrets)
        self.started.append(pod)
        return pod


@pytest.fixture
def pods(tmp_path: Path, trees: dict[str, Path]) -> Iterator[PodFactory]:
    factory = PodFactory(tmp_path, trees)
    yield factory
    for pod in factory.started:
        pod.proc.stop()


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in FIXED_ENV.items() if k not in names}


def wait_ready(pod: Pod) -> dict[str, str]:
    def ready() -> dict[str, str] | None:
        if not pod.proc.alive():
            raise Abort(pod.proc.log_tail(40))
        status, text, _ = pod.request("/sdworker/ready")
        return json.loads(text) if status == 200 else None

    return wait_for(ready, timeout=90, what="/sdworker/ready", describe=pod.proc.log_tail)


def test_the_contract_serves_offline_read_only_authenticated(pods: PodFactory) -> None:
    pod = pods.start()
    pod.wait_serving()
    assert wait_ready(pod) == {"model": "v1-5-pruned-emaonly.safetensors"}
    assert pod.request("/sdapi/v1/sd-models")[0] == 401
    status, text, _ = pod.request("/sdapi/v1/sd-models", auth="api:s3cret")
    assert status == 200
    assert json.loads(text)[0]["title"] == "v1-5-pruned-emaonly.safetensors"
    assert pod.request("/sdapi/v1/sd-models", auth="api:wrong")[0] == 401
    status, text, _ = pod.request(
        "/sdapi/v1/txt2img", method="POST", auth="api:s3cret", body={"prompt": "a cat"}
    )
    assert status == 200
    import base64

    assert base64.b64decode(json.loads(text)["images"][0]).startswith(b"\x89PNG\r\n\x1a\n")
    # POST options writes config.json under --data-dir (options.Options.save)
    assert (
        pod.request("/sdapi/v1/options", method="POST", auth="api:s3cret", body={"samples_format": "jpg"})[0]
        == 200
    )
    assert json.loads((pod.data / "config.json").read_text())["samples_format"] == "jpg"
    # Settings that would switch the extension (and with it the credentials) off at the next start: refused.
    for body in ({"disable_all_extensions": "all"}, {"disabled_extensions": ["sdworker"]}):
        status, text, _ = pod.request("/sdapi/v1/options", method="POST", auth="api:s3cret", body=body)
        assert (status, json.loads(text)["reason"]) == (403, "ForbiddenOption"), text
    assert "disable_all_extensions" not in json.loads((pod.data / "config.json").read_text())
    assert (pod.data / "ui-config.json").is_file()
    # sysinfo is behind the credentials too, and the credentials are not in it
    assert pod.request("/internal/sysinfo")[0] == 401
    status, text, _ = pod.request("/internal/sysinfo", auth="api:s3cret")
    assert status == 200
    assert "s3cret" not in text
    assert "wonder" not in text


def test_item1_gitpython_without_git_needs_refresh_quiet(pods: PodFactory) -> None:
    log = pods.start(env=without("GIT_PYTHON_REFRESH")).wait_exit()
    assert "Bad git executable" in log
    assert pods.started[0].proc.popen.returncode == 1


def test_item2_config_states_on_a_read_only_tree(pods: PodFactory) -> None:
    log = pods.start(tree="no-config-states").wait_exit()
    assert "Read-only file system" in log
    assert "config_states" in log


def test_item2_no_writable_tmp_without_tmpdir(pods: PodFactory) -> None:
    log = pods.start(env=without("TMPDIR", "GRADIO_TEMP_DIR")).wait_exit()
    assert "No usable temporary directory found" in log


def test_item3_auth_secret_mode_0400_root(pods: PodFactory) -> None:
    log = pods.start(secret_mode=0o400).wait_exit()
    assert "PermissionError" in log
    assert "gradio-auth" in log


def test_item4_file_assets_need_the_webui_dir_as_cwd(pods: PodFactory) -> None:
    for cwd, expected in (("/mnt/home", 403), (f"{RT}/stable-diffusion-webui", 200)):
        pod = pods.start(cwd=cwd)
        pod.wait_serving()
        status, _, headers = pod.request("/login", method="POST", form="username=alice&password=wonder")
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        status, html, _ = pod.request("/", cookie=cookie)
        assert status == 200
        assets = [part.split('"')[0] for part in html.split('src="')[1:]]
        assert assets
        for asset in assets:
            assert pod.request("/" + asset, cookie=cookie)[0] == expected, (cwd, asset)
        assert pod.request("/" + assets[0])[0] == 401, "gradio's login guards file="
        pod.proc.stop()


def test_item5_model_load_without_the_hub_cache_fails_and_503s_fast(pods: PodFactory) -> None:
    pod = pods.start(env=without("HUGGINGFACE_HUB_CACHE"))  # HF_HUB_CACHE alone is not read
    pod.wait_serving()

    def failed() -> dict[str, str] | None:
        status, text, _ = pod.request("/sdworker/ready")
        body = json.loads(text)
        return body if status == 503 and body["reason"] == "ModelLoadFailed" else None

    wait_for(failed, timeout=60, what="ModelLoadFailed", describe=pod.proc.log_tail)
    assert "Stable diffusion model failed to load" in pod.proc.log_tail(80)
    assert pod.request("/internal/ping")[0] == 200, "webui's ping answers after a failed load"
    assert pod.request("/sdapi/v1/sd-models", auth="api:s3cret")[0] == 200
    status, text, _ = pod.request("/sdapi/v1/txt2img", method="POST", auth="api:s3cret", body={"prompt": "x"})
    assert status == 503
    assert json.loads(text)["reason"] == "ModelLoadFailed"


def test_item5_without_offline_switches_it_tries_the_network(pods: PodFactory) -> None:
    pod = pods.start(env=without("HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    pod.wait_serving()
    wait_for(
        lambda: "Stable diffusion model failed to load" in pod.proc.log_tail(200),
        timeout=90,
        what="the load to fail",
        describe=pod.proc.log_tail,
    )
    assert "huggingface.co" in pod.proc.log_tail(200)


def test_item6_without_the_extension_the_api_is_open(pods: PodFactory) -> None:
    pod = pods.start(tree="ext-in-extensions")  # item 7: extensions/ is not scanned under --data-dir
    pod.wait_serving()
    assert pod.request("/sdapi/v1/sd-models")[0] == 200, "webui guards /sdapi only with --api-auth"
    assert pod.request("/sdworker/ready")[0] == 404, "the extension under extensions/ was not loaded"
    status, text, _ = pod.request("/internal/sysinfo")
    assert status == 200
    assert not any("sdworker" in e["path"] for e in json.loads(text)["Extensions"])


def test_item8_api_only_mode_gets_the_extension_too(pods: PodFactory) -> None:
    pod = pods.start(args=[*ARGS[:-2], "--nowebui"])

    def ready() -> bool:
        if not pod.proc.alive():
            raise Abort(pod.proc.log_tail(40))
        return pod.request("/sdworker/ready")[0] == 200

    wait_for(ready, timeout=90, what="ready under --nowebui", describe=pod.proc.log_tail)
    assert pod.request("/internal/ping")[0] == 404, "webui adds /internal/ping only with the UI"
    assert pod.request("/sdapi/v1/sd-models")[0] == 401


def test_unknown_flags_are_rejected(pods: PodFactory) -> None:
    pod = pods.start(args=[*ARGS, "--no-such-flag"])
    log = pod.wait_exit()
    assert "unrecognized arguments: --no-such-flag" in log
    assert pod.proc.popen.returncode == 2


def test_the_assembled_tree_passes_the_image_builders_checks(trees: dict[str, Path]) -> None:
    from sdworker_images import spec, tree

    runtime = spec.load(standin_runtime.REPO / "examples" / "runtime.yaml")
    items = tree.scan(trees["fixed"])
    interpreter = tree.check_interpreter(trees["fixed"], items, runtime.python)
    tree.check_symlinks(items, interpreter.path)
    paths = {i.path for i in items}
    assert "stable-diffusion-webui/config_states" in paths
    assert "stable-diffusion-webui/extensions-builtin/sdworker/scripts/sdworker_api.py" in paths
    assert "huggingface/hub/models--openai--clip-vit-large-patch14/refs/main" in paths


def test_item2_model_folders_must_exist_on_the_read_only_tree(pods: PodFactory) -> None:
    log = pods.start(tree="no-model-dirs").wait_exit()  # shared_init.initialize(): makedirs(hypernetwork_dir)
    assert f"Read-only file system: '{MODELS}/hypernetworks'" in log


def test_an_unreadable_api_credentials_file_denies_the_api(pods: PodFactory) -> None:
    pod = pods.start(env={**FIXED_ENV, "SDWORKER_API_AUTH_FILE": f"{SECRETS}/missing"})
    pod.wait_serving()
    status, text, _ = pod.request("/sdapi/v1/sd-models", auth="api:s3cret")
    assert status == 503
    assert json.loads(text)["reason"] == "AuthUnavailable"
    assert "FileNotFoundError" in pod.proc.log_tail(80)
    assert pod.request("/internal/ping")[0] == 200, "probes keep working"
    wait_ready(pod)


def test_the_operators_rendered_args_are_accepted(trees: dict[str, Path]) -> None:
    """webui's strict parse (shared_cmd_options) of what render.webui_args() gives the example SDWorker."""
    import yaml

    from sdworker.api.parse import parse_sdworker_spec
    from sdworker.domain import render

    example = yaml.safe_load((standin_runtime.REPO / "examples" / "sdworker.yaml").read_text())
    args = render.webui_args(parse_sdworker_spec(example["spec"]).webui)
    webui = trees["fixed"] / "stable-diffusion-webui"
    code = "import sys; sys.argv[1:] = sys.argv[2:]; from modules.shared_cmd_options import cmd_opts"
    env = {
        "PATH": "/usr/bin:/bin",
        "GIT_PYTHON_REFRESH": "quiet",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{webui}:{trees['fixed'] / standin_runtime.SITE_PACKAGES}",
    }
    ok = procs.run([str(PY310 / "bin" / "python3.10"), "-s", "-c", code, "--", *args], env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = procs.run(
        [str(PY310 / "bin" / "python3.10"), "-s", "-c", code, "--", *args, "--share-me"], env=env, check=False
    )
    assert bad.returncode == 2
    assert "unrecognized arguments: --share-me" in bad.stderr


def test_item8_without_the_extension_a_failed_load_is_retried_by_each_request(pods: PodFactory) -> None:
    """webui alone: ping stays 200 after the failed load, and txt2img re-runs the load (get_sd_model)."""
    pod = pods.start(tree="ext-in-extensions", env=without("HUGGINGFACE_HUB_CACHE"))
    pod.wait_serving()
    wait_for(
        lambda: "Stable diffusion model failed to load" in pod.proc.log_tail(200),
        timeout=60,
        what="the first load to fail",
        describe=pod.proc.log_tail,
    )
    assert pod.request("/internal/ping")[0] == 200
    status, _, _ = pod.request("/sdapi/v1/txt2img", method="POST", body={"prompt": "x"})
    assert status == 500
    assert pod.proc.log_tail(400).count("Stable diffusion model failed to load") == 2, (
        "the request loaded again"
    )
