"""Turn a raw SDWorker into a typed, validated ``SDWorker``: the CRD schema, then the CRD's CEL rules.

Structure (types, bounds, patterns, enums, defaults) is checked from the CRD's own schema by
``sdworker.api.schema``; this module adds only what the schema cannot say: the CRD's CEL rules, written
out here with the rule each implements, and the label-key check. Errors name the field path in the API
server's words, so a ``Degraded`` condition reads like the ``kubectl apply`` error the user would have seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from sdworker.api import constants as c
from sdworker.api import rules
from sdworker.api.schema import FieldError, SpecError, object_schema, quote, spec_schema, validate
from sdworker.api.types import (
    DiskType,
    ResourceRequirements,
    RuntimeMode,
    RuntimeSpec,
    SDWorker,
    SDWorkerSpec,
    Toleration,
    WarmPool,
    WebUISpec,
)

# (flags, message) for each family of flags webui.args must not set; the CRD has one CEL rule per family.
_FORBIDDEN_FLAG_FAMILIES: Final = (
    (c.CREDENTIAL_FLAGS, c.MESSAGE_CREDENTIALS),
    (c.PUBLIC_FLAGS, c.MESSAGE_PUBLIC),
    (c.EXTENSIONS_OFF_FLAGS, c.MESSAGE_EXTENSIONS_OFF),
    (c.OWNED_FLAGS, c.MESSAGE_OWNED_FLAG),
)


_PLURAL: Final = c.SDWORKER_PLURAL


def parse_sdworker(obj: Mapping[str, Any]) -> SDWorker:
    """Parse a whole SDWorker object: its identity from metadata and its validated spec."""
    d = validate(object_schema(_PLURAL), obj, _object_rules)
    meta = d["metadata"]
    return SDWorker(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=meta.get("generation", 0),
        spec=_spec(d["spec"]),
    )


def parse_sdworker_spec(spec: Mapping[str, Any]) -> SDWorkerSpec:
    """Parse and validate an SDWorker ``spec``, applying the CRD's defaults; raises SpecError."""
    if spec is None:
        raise SpecError([FieldError("spec", "Required value")])
    return _spec(validate(spec_schema(_PLURAL), spec, lambda d: _spec_rules(d, "spec"), "spec"))


def _spec(d: Mapping[str, Any]) -> SDWorkerSpec:
    runtime, webui, resources = d["runtime"], d["webui"], d["resources"]
    return SDWorkerSpec(
        replicas=d["replicas"],
        runtime=RuntimeSpec(
            image=runtime["image"],
            disk_type=DiskType(runtime["diskType"]),
            disk_size_gb=runtime["diskSizeGb"],
            mode=RuntimeMode(runtime["mode"]),
            warm_pool=WarmPool(size=runtime["warmPool"]["size"]),
            prefetch=tuple(runtime.get("prefetch", ())),
        ),
        webui=WebUISpec(
            base_image=webui["baseImage"],
            model=webui["model"],
            args=tuple(webui.get("args", ())),
            allow_insecure_extension_access=webui["allowInsecureExtensionAccess"],
            port=webui["port"],
            auth_secret_name=webui.get("authSecretRef", {}).get("name"),
        ),
        node_selector=dict(d["nodeSelector"]),
        tolerations=tuple(
            Toleration(
                key=t.get("key", ""),
                operator=t.get("operator", ""),
                value=t.get("value", ""),
                effect=t.get("effect", ""),
                toleration_seconds=t.get("tolerationSeconds"),
            )
            for t in d.get("tolerations", ())
        ),
        resources=ResourceRequirements(
            requests={k: str(v) for k, v in resources.get("requests", {}).items()},
            limits={k: str(v) for k, v in resources.get("limits", {}).items()},
        ),
    )


# ---------------------------------------------------------------- the CEL rules, in the CRD's order


def _object_rules(d: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    name = d["metadata"]["name"]
    # CEL on the object: metadata.name.size() <= 63 && metadata.name.matches(DNS-1035 label)
    if not (len(name) <= c.NAME_MAX_LENGTH and re.fullmatch(c.DNS1035_LABEL_PATTERN, name)):
        errors.append(FieldError("metadata.name", c.MESSAGE_NAME))
    return errors + _spec_rules(d["spec"], "spec")


def _spec_rules(d: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = _runtime_rules(d["runtime"], f"{path}.runtime")
    errors += _webui_rules(d["webui"], f"{path}.webui")
    for key in d["nodeSelector"]:  # not a CRD rule: a label key the Deployment would be refused for
        if (problem := rules.label_key_problem(key)) is not None:
            errors.append(
                FieldError(f"{path}.nodeSelector[{key}]", f"Invalid value: {quote(key)}: {problem}")
            )
    for i, toleration in enumerate(d.get("tolerations", ())):
        errors += _toleration_rules(toleration, f"{path}.tolerations[{i}]")
    limits = d["resources"].get("limits", {})
    # CEL on resources: has(limits) && gpu in limits && string(limits[gpu]).matches('^[1-9][0-9]*$')
    if not re.fullmatch(r"[1-9][0-9]*", str(limits.get(c.GPU_RESOURCE, ""))):
        errors.append(FieldError(f"{path}.resources.limits", c.MESSAGE_GPU))
    return errors


def _runtime_rules(d: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    # CEL on runtime: mode != 'SharedReadOnly' || warmPool.size == 0
    if d["mode"] == RuntimeMode.SHARED_READ_ONLY and d["warmPool"]["size"]:
        errors.append(FieldError(f"{path}.warmPool.size", c.MESSAGE_WARM_POOL_SHARED))
    # CEL on runtime: mode != 'SharedReadOnly' || diskType in [...]
    errors += rules.shared_disk_type_errors(d["diskType"], d["mode"], f"{path}.diskType")
    # CEL on diskSizeGb: self >= 10
    if d["diskSizeGb"] < c.DISK_SIZE_MIN_GB:
        errors.append(FieldError(f"{path}.diskSizeGb", c.MESSAGE_DISK_TOO_SMALL))
    return errors + rules.prefetch_errors(d.get("prefetch", ()), f"{path}.prefetch")


def _webui_rules(d: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    # CEL on model: self.matches('^[^/]+[.](safetensors|ckpt)$')
    if not re.fullmatch(c.MODEL_PATTERN, d["model"]):
        errors.append(FieldError(f"{path}.model", c.MESSAGE_MODEL))
    args = d.get("args", ())
    for i, arg in enumerate(args):
        # The four CEL rules on args items, one message per argument, in the CRD's order.
        for family, message in _FORBIDDEN_FLAG_FAMILIES:
            if rules.flag_matches(arg, family):
                errors.append(FieldError(f"{path}.args[{i}]", message))
                break
    # CEL on webui: allowInsecureExtensionAccess || !args.exists(a, a abbreviates the insecure flag)
    insecure = any(rules.flag_matches(arg, (c.INSECURE_EXTENSIONS_FLAG,)) for arg in args)
    if insecure and not d["allowInsecureExtensionAccess"]:
        errors.append(FieldError(f"{path}.args", c.MESSAGE_INSECURE))
    return errors


def _toleration_rules(d: Mapping[str, Any], path: str) -> list[FieldError]:
    """The five CEL rules on tolerations items; an absent string field reads as empty, as has() does."""
    key, operator, value, effect = (d.get(k, "") for k in ("key", "operator", "value", "effect"))
    errors = []
    if key == c.STARTUP_TAINT_KEY:
        errors.append(FieldError(f"{path}.key", c.MESSAGE_TOLERATION_STARTUP))
    if not key and effect in ("", c.STARTUP_TAINT_EFFECT):
        errors.append(FieldError(path, c.MESSAGE_TOLERATION_WILDCARD))
    if operator == "Exists" and value:
        errors.append(FieldError(f"{path}.value", c.MESSAGE_TOLERATION_EXISTS_VALUE))
    if not key and operator != "Exists":
        errors.append(FieldError(f"{path}.operator", c.MESSAGE_TOLERATION_EMPTY_KEY))
    if "tolerationSeconds" in d and effect != "NoExecute":
        errors.append(FieldError(f"{path}.tolerationSeconds", c.MESSAGE_TOLERATION_SECONDS))
    return errors
