"""Turn raw SDWorker and RuntimeDisk dicts into typed objects, validating them as the CRD does.

The API server validates on write, but the operator cannot rely on it: the installed CRD may be older or
newer than this code, objects may predate a rule, and an operator that crashes on odd input stops serving
everyone. So everything the CRD checks (types, bounds, patterns, enums and the CEL rules) is checked again
here, and the defaults are applied again. Errors name the field path and use the API server's wording, so a
``Degraded`` condition reads like the ``kubectl apply`` error the user would have seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

from sdworker.api import constants as c
from sdworker.api import naming
from sdworker.api.types import (
    Condition,
    ConditionStatus,
    DiskType,
    NodeCounts,
    Phase,
    PrefetchStats,
    ResourceRequirements,
    RolloutStatus,
    RuntimeDisk,
    RuntimeDiskSpec,
    RuntimeDiskStatus,
    RuntimeMode,
    RuntimeSpec,
    RuntimeStatus,
    SDWorker,
    SDWorkerSpec,
    Timings,
    Toleration,
    WarmPool,
    WebUISpec,
)

LABEL_KEY_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_KEY_MAX: Final = 317
LABEL_NAME_MAX: Final = 63
TOLERATION_KEY_MAX: Final = 317

_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """One or more fields are invalid; ``errors`` lists each with its path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


class _Checker:
    """Collects field errors so one pass reports all of them, like the API server does."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_failed(self) -> None:
        if self.errors:
            raise SpecError(self.errors)

    def required(self, parent: Mapping[str, Any], key: str, path: str) -> Any:
        # The API server prunes nulls of non-nullable fields, so a null is as good as missing.
        value = parent.get(key)
        if value is None:
            self.fail(path, "Required value")
        return value

    def type_ok(self, value: object, expected: str, path: str) -> bool:
        if _json_type(value) == expected or (expected == "number" and _json_type(value) == "integer"):
            return True
        if expected == "integer" and isinstance(value, float) and value.is_integer():
            return True
        self.fail(path, f'must be of type {expected}: "{_json_type(value)}"')
        return False

    def mapping(self, value: object, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return None
        return value if self.type_ok(value, "object", path) and isinstance(value, Mapping) else None

    def array(self, value: object, path: str, max_items: int | None = None) -> list[Any] | None:
        if value is None:
            return None
        if not self.type_ok(value, "array", path) or not isinstance(value, list | tuple):
            return None
        if max_items is not None and len(value) > max_items:
            self.fail(path, f"Too many: {len(value)}: must have at most {max_items} items")
            return None
        return list(value)

    def integer(
        self,
        value: object,
        path: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        if value is None:
            return default
        if not self.type_ok(value, "integer", path) or not isinstance(value, int | float):
            return None
        number = int(value)
        ok = True
        if minimum is not None and number < minimum:
            self.fail(path, f"should be greater than or equal to {minimum}")
            ok = False
        if maximum is not None and number > maximum:
            self.fail(path, f"should be less than or equal to {maximum}")
            ok = False
        return number if ok else None

    def number(self, value: object, path: str) -> float | None:
        if value is None:
            return None
        if not self.type_ok(value, "number", path) or not isinstance(value, int | float):
            return None
        return float(value)

    def boolean(self, value: object, path: str, *, default: bool) -> bool:
        if value is None:
            return default
        if not self.type_ok(value, "boolean", path) or not isinstance(value, bool):
            return default
        return value

    def string(
        self,
        value: object,
        path: str,
        *,
        default: str | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
    ) -> str | None:
        if value is None:
            return default
        if not self.type_ok(value, "string", path) or not isinstance(value, str):
            return None
        ok = True
        if max_length is not None and len(value.encode("utf-8", "surrogatepass")) > max_length:
            self.fail(path, f"Too long: may not be more than {max_length} bytes")
            ok = False
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(path, f"should match '{pattern}'")
            ok = False
        return value if ok else None

    def enum(self, value: object, path: str, enum: type[_E], *, default: _E | None = None) -> _E | None:
        if value is None:
            return default
        if not self.type_ok(value, "string", path) or not isinstance(value, str):
            return None
        try:
            return enum(value)
        except ValueError:
            supported = ", ".join(f'"{member.value}"' for member in enum)
            self.fail(path, f"Unsupported value: {_quote(value)}: supported values: {supported}")
            return None

    def string_enum(self, value: object, path: str, allowed: Sequence[str]) -> str | None:
        if value is None:
            return ""
        if not self.type_ok(value, "string", path) or not isinstance(value, str):
            return None
        if value not in allowed:
            supported = ", ".join(f'"{a}"' for a in allowed)
            self.fail(path, f"Unsupported value: {_quote(value)}: supported values: {supported}")
            return None
        return value


# ---------------------------------------------------------------- flag rules shared with the CRD's CEL


def flag_matches(arg: str, family: Sequence[str]) -> bool:
    """Whether ``arg`` sets one of ``family``, counting ``--flag=value`` and argparse abbreviations.

    webui parses its flags with argparse, which accepts any unambiguous prefix of a long option, so
    ``--api-a user:pw`` sets ``--api-auth``. Exact webui flags that happen to be prefixes (``--api``) are
    exempt because argparse prefers an exact match. The CRD's CEL rules implement the same test.
    """
    if not arg.startswith("--"):
        return False
    name = arg.split("=", 1)[0]
    if len(name) <= 2 or name in c.PREFIX_SAFE_FLAGS:
        return False
    return any(flag.startswith(name) for flag in family)


# ---------------------------------------------------------------- SDWorker


def parse_sdworker(obj: Mapping[str, Any]) -> SDWorker:
    """Parse a whole SDWorker object: its identity from metadata and its validated spec."""
    chk = _Checker()
    meta = chk.mapping(chk.required(obj, "metadata", "metadata"), "metadata") or {}
    name = chk.string(chk.required(meta, "name", "metadata.name"), "metadata.name") or ""
    if name and not (len(name) <= c.NAME_MAX_LENGTH and re.fullmatch(c.DNS1035_LABEL_PATTERN, name)):
        chk.fail("metadata.name", c.MESSAGE_NAME)
    namespace = chk.string(meta.get("namespace"), "metadata.namespace", default="") or ""
    uid = chk.string(meta.get("uid"), "metadata.uid", default="") or ""
    generation = chk.integer(meta.get("generation"), "metadata.generation", default=0) or 0
    spec = _sdworker_spec(chk, chk.required(obj, "spec", "spec"), "spec")
    chk.raise_if_failed()
    if spec is None:  # pragma: no cover - a None spec always records an error above
        raise SpecError([FieldError("spec", "Required value")])
    return SDWorker(namespace=namespace, name=name, uid=uid, generation=generation, spec=spec)


def parse_sdworker_spec(spec: Mapping[str, Any]) -> SDWorkerSpec:
    """Parse and validate an SDWorker ``spec``, applying the CRD's defaults; raises SpecError."""
    if spec is None:
        raise SpecError([FieldError("spec", "Required value")])
    chk = _Checker()
    result = _sdworker_spec(chk, spec, "spec")
    chk.raise_if_failed()
    if result is None:  # pragma: no cover - a None result always records an error above
        raise SpecError([FieldError("spec", "Required value")])
    return result


def _sdworker_spec(chk: _Checker, raw: object, path: str) -> SDWorkerSpec | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    replicas = chk.integer(
        d.get("replicas"),
        f"{path}.replicas",
        default=c.DEFAULT_REPLICAS,
        minimum=c.REPLICAS_MIN,
        maximum=c.REPLICAS_MAX,
    )
    runtime = _runtime(chk, chk.required(d, "runtime", f"{path}.runtime"), f"{path}.runtime")
    webui = _webui(chk, chk.required(d, "webui", f"{path}.webui"), f"{path}.webui")
    node_selector = _node_selector(
        chk, chk.required(d, "nodeSelector", f"{path}.nodeSelector"), f"{path}.nodeSelector"
    )
    tolerations = _tolerations(chk, d.get("tolerations"), f"{path}.tolerations")
    resources = _resources(chk, d.get("resources"), f"{path}.resources")
    if (
        len(chk.errors) > before
        or replicas is None
        or runtime is None
        or webui is None
        or node_selector is None
        or tolerations is None
        or resources is None
    ):
        return None
    return SDWorkerSpec(
        replicas=replicas,
        runtime=runtime,
        webui=webui,
        node_selector=node_selector,
        tolerations=tolerations,
        resources=resources,
    )


def _runtime(chk: _Checker, raw: object, path: str) -> RuntimeSpec | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    image = chk.string(
        chk.required(d, "image", f"{path}.image"),
        f"{path}.image",
        max_length=c.IMAGE_MAX_LENGTH,
        pattern=c.RUNTIME_IMAGE_PATTERN,
    )
    disk_type = chk.enum(d.get("diskType"), f"{path}.diskType", DiskType, default=DiskType.PD_BALANCED)
    size = chk.integer(
        d.get("diskSizeGb"), f"{path}.diskSizeGb", default=c.DEFAULT_DISK_SIZE_GB, maximum=c.DISK_SIZE_MAX_GB
    )
    if size is not None and size < c.DISK_SIZE_MIN_GB:
        chk.fail(f"{path}.diskSizeGb", c.MESSAGE_DISK_TOO_SMALL)
    mode = chk.enum(d.get("mode"), f"{path}.mode", RuntimeMode, default=RuntimeMode.PER_NODE)
    pool_raw = chk.mapping(d.get("warmPool"), f"{path}.warmPool") or {}
    pool_size = chk.integer(
        pool_raw.get("size"), f"{path}.warmPool.size", default=0, minimum=0, maximum=c.WARM_POOL_MAX
    )
    if mode is RuntimeMode.SHARED_READ_ONLY and pool_size:
        chk.fail(f"{path}.warmPool.size", c.MESSAGE_WARM_POOL_SHARED)
    _shared_disk_type(chk, disk_type, mode, f"{path}.diskType")
    prefetch = _prefetch(chk, d.get("prefetch"), f"{path}.prefetch")
    if len(chk.errors) > before or not image or not disk_type or not size or not mode or pool_size is None:
        return None
    return RuntimeSpec(
        image=image,
        disk_type=disk_type,
        disk_size_gb=size,
        mode=mode,
        warm_pool=WarmPool(size=pool_size),
        prefetch=prefetch,
    )


def _shared_disk_type(chk: _Checker, disk_type: DiskType | None, mode: RuntimeMode | None, path: str) -> None:
    """SharedReadOnly needs a disk type GCE can attach read-only to many VMs."""
    if mode is RuntimeMode.SHARED_READ_ONLY and disk_type and disk_type not in c.SHARED_READ_ONLY_DISK_TYPES:
        chk.fail(path, c.MESSAGE_SHARED_DISK_TYPE)


def prefetch_problem(entry: str) -> str | None:
    """Why a prefetch entry is unsafe, or None. The agent reads these paths relative to the mount."""
    if not entry:
        return c.MESSAGE_PREFETCH_EMPTY
    if entry.startswith("/"):
        return c.MESSAGE_PREFETCH_ABSOLUTE
    if entry == ".." or entry.startswith("../") or entry.endswith("/..") or "/../" in entry:
        return c.MESSAGE_PREFETCH_DOTDOT
    return None


def _prefetch(chk: _Checker, raw: object, path: str) -> tuple[str, ...]:
    items = chk.array(raw, path, max_items=c.PREFETCH_MAX_ITEMS) or []
    seen: set[str] = set()
    result: list[str] = []
    for i, item in enumerate(items):
        entry = chk.string(item, f"{path}[{i}]", max_length=c.PREFETCH_MAX_LENGTH)
        if entry is None:
            continue
        if (problem := prefetch_problem(entry)) is not None:
            chk.fail(f"{path}[{i}]", problem)
        elif entry in seen:
            chk.fail(f"{path}[{i}]", f"Duplicate value: {_quote(entry)}")
        else:
            seen.add(entry)
            result.append(entry)
    return tuple(result)


def _webui(chk: _Checker, raw: object, path: str) -> WebUISpec | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    base_image = chk.string(
        chk.required(d, "baseImage", f"{path}.baseImage"),
        f"{path}.baseImage",
        max_length=c.BASE_IMAGE_MAX_LENGTH,
        pattern=c.BASE_IMAGE_PATTERN,
    )
    model = chk.string(
        d.get("model"), f"{path}.model", default=c.DEFAULT_MODEL, max_length=c.MODEL_MAX_LENGTH
    )
    if model is not None and not re.fullmatch(c.MODEL_PATTERN, model):
        chk.fail(f"{path}.model", c.MESSAGE_MODEL)
    allow_insecure = chk.boolean(
        d.get("allowInsecureExtensionAccess"), f"{path}.allowInsecureExtensionAccess", default=False
    )
    port = chk.integer(
        d.get("port"), f"{path}.port", default=c.DEFAULT_PORT, minimum=c.PORT_MIN, maximum=c.PORT_MAX
    )
    args = _args(chk, d.get("args"), f"{path}.args", allow_insecure=allow_insecure)
    secret = None
    if (ref := chk.mapping(d.get("authSecretRef"), f"{path}.authSecretRef")) is not None:
        secret = chk.string(
            chk.required(ref, "name", f"{path}.authSecretRef.name"),
            f"{path}.authSecretRef.name",
            max_length=c.SECRET_NAME_MAX_LENGTH,
            pattern=c.DNS1123_SUBDOMAIN_PATTERN,
        )
    if len(chk.errors) > before or not base_image or not model or not port:
        return None
    return WebUISpec(
        base_image=base_image,
        model=model,
        args=args,
        allow_insecure_extension_access=allow_insecure,
        port=port,
        auth_secret_name=secret,
    )


# (flags, message) for each family of flags webui.args must not set; the CRD has one CEL rule per family.
_FORBIDDEN_FLAG_FAMILIES: Final = (
    (c.CREDENTIAL_FLAGS, c.MESSAGE_CREDENTIALS),
    (c.PUBLIC_FLAGS, c.MESSAGE_PUBLIC),
    (c.EXTENSIONS_OFF_FLAGS, c.MESSAGE_EXTENSIONS_OFF),
    (c.OWNED_FLAGS, c.MESSAGE_OWNED_FLAG),
)


def _args(chk: _Checker, raw: object, path: str, *, allow_insecure: bool) -> tuple[str, ...]:
    items = chk.array(raw, path, max_items=c.ARGS_MAX_ITEMS) or []
    result: list[str] = []
    insecure = False
    for i, item in enumerate(items):
        arg = chk.string(item, f"{path}[{i}]", max_length=c.ARG_MAX_LENGTH)
        if arg is None:
            continue
        # One message per argument, in the order of the CEL rules on args items in the CRD.
        for family, message in _FORBIDDEN_FLAG_FAMILIES:
            if flag_matches(arg, family):
                chk.fail(f"{path}[{i}]", message)
                break
        insecure = insecure or flag_matches(arg, (c.INSECURE_EXTENSIONS_FLAG,))
        result.append(arg)
    if insecure and not allow_insecure:
        chk.fail(path, c.MESSAGE_INSECURE)
    return tuple(result)


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key (``[prefix/]name``), or None."""
    prefix, _, name = key.rpartition("/")
    if len(key) > LABEL_KEY_MAX:
        return f"must be no more than {LABEL_KEY_MAX} characters"
    if prefix and not re.fullmatch(c.DNS1123_SUBDOMAIN_PATTERN, prefix):
        return "prefix part must be a lower-case DNS subdomain"
    if not name or len(name) > LABEL_NAME_MAX or not LABEL_KEY_NAME_RE.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', start and end with an "
            "alphanumeric character, and be at most 63 characters"
        )
    return None


def _node_selector(chk: _Checker, raw: object, path: str) -> dict[str, str] | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    if len(d) < 1:
        chk.fail(path, "should have at least 1 properties")
    if len(d) > c.NODE_SELECTOR_MAX_PROPERTIES:
        chk.fail(path, f"should have at most {c.NODE_SELECTOR_MAX_PROPERTIES} properties")
    result: dict[str, str] = {}
    for key, value in sorted(d.items(), key=lambda kv: str(kv[0])):
        key_path = f"{path}[{key}]"
        if (problem := label_key_problem(str(key))) is not None:
            chk.fail(key_path, f"Invalid value: {_quote(key)}: {problem}")
        v = chk.string(
            value, key_path, max_length=c.NAME_MAX_LENGTH, pattern=c.LABEL_VALUE_PATTERN, default=None
        )
        if value is None:
            chk.fail(key_path, 'must be of type string: "null"')
        elif v is not None:
            result[str(key)] = v
    return None if len(chk.errors) > before else result


def _tolerations(chk: _Checker, raw: object, path: str) -> tuple[Toleration, ...] | None:
    items = chk.array(raw, path, max_items=c.TOLERATIONS_MAX_ITEMS)
    if items is None:
        return None if raw is not None else ()
    before = len(chk.errors)
    result = []
    for i, item in enumerate(items):
        if (t := _toleration(chk, item, f"{path}[{i}]")) is not None:
            result.append(t)
    return None if len(chk.errors) > before else tuple(result)


def _toleration(chk: _Checker, raw: object, path: str) -> Toleration | None:
    d = chk.mapping(raw, path)
    if d is None:
        if raw is None:
            chk.fail(path, 'must be of type object: "null"')
        return None
    before = len(chk.errors)
    key = chk.string(d.get("key"), f"{path}.key", default="", max_length=TOLERATION_KEY_MAX)
    operator = chk.string_enum(d.get("operator"), f"{path}.operator", c.TOLERATION_OPERATORS)
    value = chk.string(d.get("value"), f"{path}.value", default="", max_length=c.NAME_MAX_LENGTH)
    effect = chk.string_enum(d.get("effect"), f"{path}.effect", c.TAINT_EFFECTS)
    seconds = chk.integer(d.get("tolerationSeconds"), f"{path}.tolerationSeconds")
    if len(chk.errors) > before or key is None or operator is None or value is None or effect is None:
        return None
    # The same rules, in the same order, as the CEL rules on tolerations items in the CRD.
    if key == c.STARTUP_TAINT_KEY:
        chk.fail(f"{path}.key", c.MESSAGE_TOLERATION_STARTUP)
    if not key and effect in ("", c.STARTUP_TAINT_EFFECT):
        chk.fail(path, c.MESSAGE_TOLERATION_WILDCARD)
    if operator == "Exists" and value:
        chk.fail(f"{path}.value", c.MESSAGE_TOLERATION_EXISTS_VALUE)
    if not key and operator != "Exists":
        chk.fail(f"{path}.operator", c.MESSAGE_TOLERATION_EMPTY_KEY)
    if seconds is not None and effect != "NoExecute":
        chk.fail(f"{path}.tolerationSeconds", c.MESSAGE_TOLERATION_SECONDS)
    if len(chk.errors) > before:
        return None
    return Toleration(key=key, operator=operator, value=value, effect=effect, toleration_seconds=seconds)


def _quantities(chk: _Checker, raw: object, path: str) -> dict[str, str] | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    if len(d) > c.RESOURCE_MAP_MAX_PROPERTIES:
        chk.fail(path, f"should have at most {c.RESOURCE_MAP_MAX_PROPERTIES} properties")
    result: dict[str, str] = {}
    for name, value in sorted(d.items(), key=lambda kv: str(kv[0])):
        item_path = f"{path}[{name}]"
        if isinstance(value, int) and not isinstance(value, bool):
            result[str(name)] = str(value)
        elif isinstance(value, float) and value.is_integer():
            result[str(name)] = str(int(value))
        elif isinstance(value, str):
            if re.fullmatch(c.QUANTITY_PATTERN, value):
                result[str(name)] = value
            else:
                chk.fail(item_path, f"should match '{c.QUANTITY_PATTERN}'")
        else:
            chk.fail(item_path, f'must be of type integer or string: "{_json_type(value)}"')
    return result


def _resources(chk: _Checker, raw: object, path: str) -> ResourceRequirements | None:
    if raw is None:
        return ResourceRequirements()
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    requests = _quantities(chk, d.get("requests"), f"{path}.requests")
    limits = _quantities(chk, d.get("limits"), f"{path}.limits")
    if len(chk.errors) > before:
        return None
    gpu = (limits or {}).get(c.GPU_RESOURCE, "")
    if not re.fullmatch(r"[1-9][0-9]*", gpu):
        chk.fail(f"{path}.limits", c.MESSAGE_GPU)
        return None
    return ResourceRequirements(requests=requests or {}, limits=limits or {})


# ---------------------------------------------------------------- times and conditions


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment.astimezone(UTC)


def parse_conditions(raw: object) -> tuple[Condition, ...]:
    """Read previously written conditions, skipping malformed entries instead of failing.

    Conditions are recomputed on every reconcile; the old list only supplies transition times, so losing
    a mangled entry costs one timestamp, while failing would block the whole status update.
    """
    if not isinstance(raw, list | tuple):
        return ()
    result: list[Condition] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        try:
            generation = item.get("observedGeneration")
            result.append(
                Condition(
                    type=str(item["type"]),
                    status=ConditionStatus(item["status"]),
                    reason=str(item.get("reason", "")),
                    message=str(item.get("message", "")),
                    last_transition_time=parse_time(str(item["lastTransitionTime"])),
                    observed_generation=generation if isinstance(generation, int) else None,
                )
            )
        except (KeyError, ValueError, TypeError):
            continue
    return tuple(result)


def parse_runtime_status(raw: object) -> RuntimeStatus | None:
    """Read the runtime a previous reconcile recorded in ``status.runtime``; None when absent or malformed.

    This record is what an SDWorker keeps serving while its image cannot be resolved (issue 14): the
    served runtime changes only when a new image is actually resolved, never because a lookup failed.
    """
    if not isinstance(raw, Mapping):
        return None
    image, digest, runtime_id = raw.get("image"), raw.get("digest", ""), raw.get("runtimeId")
    if not (isinstance(image, str) and image and isinstance(runtime_id, str) and runtime_id):
        return None
    return RuntimeStatus(image=image, digest=digest if isinstance(digest, str) else "", runtime_id=runtime_id)


def _counts(raw: object) -> NodeCounts:
    got = raw if isinstance(raw, Mapping) else {}
    values = {k: got.get(k) for k in ("ready", "provisioning", "failed")}
    return NodeCounts(**{k: v if isinstance(v, int) else 0 for k, v in values.items()})


def parse_rollout_status(raw: object) -> RolloutStatus | None:
    """Read the rollout a previous reconcile recorded in ``status.rollout``; None when absent or malformed.

    Its target is what a pinned SDWorker, or one whose image lookup fails, keeps rolling to (issue 14).
    """
    if not isinstance(raw, Mapping):
        return None
    target = parse_runtime_status(raw.get("target"))
    if target is None:
        return None
    updated = raw.get("updatedReplicas")
    return RolloutStatus(
        target=target,
        paused=raw.get("paused") is True,
        target_nodes=_counts(raw.get("targetNodes")),
        served_nodes=_counts(raw.get("servedNodes")),
        updated_replicas=updated if isinstance(updated, int) else 0,
    )


# ---------------------------------------------------------------- RuntimeDisk


def parse_runtimedisk(obj: Mapping[str, Any]) -> RuntimeDisk:
    """Parse a whole RuntimeDisk object (name, spec, status, whether it is being deleted)."""
    chk = _Checker()
    meta = chk.mapping(chk.required(obj, "metadata", "metadata"), "metadata") or {}
    name = chk.string(chk.required(meta, "name", "metadata.name"), "metadata.name") or ""
    spec = _runtimedisk_spec(chk, chk.required(obj, "spec", "spec"), "spec")
    status = _runtimedisk_status(chk, obj.get("status"), "status")
    chk.raise_if_failed()
    if spec is None:  # pragma: no cover - a None spec always records an error above
        raise SpecError([FieldError("spec", "Required value")])
    return RuntimeDisk(
        name=name,
        spec=spec,
        status=status,
        deleting=meta.get("deletionTimestamp") is not None,
    )


def parse_runtimedisk_spec(spec: Mapping[str, Any]) -> RuntimeDiskSpec:
    chk = _Checker()
    result = _runtimedisk_spec(chk, spec, "spec")
    chk.raise_if_failed()
    if result is None:  # pragma: no cover - a None result always records an error above
        raise SpecError([FieldError("spec", "Required value")])
    return result


# (max length, pattern) of each RuntimeDisk spec string: the node agent is privileged and acts on these
# (mount path, device name, digest, node), so they are held to exactly what the operator produces.
_RD_STRING_FIELDS: Final[dict[str, tuple[int, str]]] = {
    "nodeName": (c.NODE_NAME_MAX_LENGTH, c.DNS1123_SUBDOMAIN_PATTERN),
    "zone": (c.GCE_NAME_MAX_LENGTH, c.GCE_ZONE_PATTERN),
    "instance": (c.GCE_NAME_MAX_LENGTH, c.DNS1035_LABEL_PATTERN),
    "project": (c.PROJECT_MAX_LENGTH, c.GCE_PROJECT_PATTERN),
    "image": (c.IMAGE_MAX_LENGTH, c.RUNTIME_IMAGE_PATTERN),
    "runtimeId": (c.RUNTIME_ID_MAX_LENGTH, c.DNS1035_LABEL_PATTERN),
    "diskName": (c.GCE_NAME_MAX_LENGTH, c.DNS1035_LABEL_PATTERN),
    "deviceName": (c.GCE_NAME_MAX_LENGTH, c.DNS1035_LABEL_PATTERN),
    "mountPath": (c.MOUNT_PATH_MAX_LENGTH, c.MOUNT_PATH_PATTERN),
}


def _runtimedisk_spec(chk: _Checker, raw: object, path: str) -> RuntimeDiskSpec | None:
    d = chk.mapping(raw, path)
    if d is None:
        return None
    before = len(chk.errors)
    strings = {
        key: chk.string(
            chk.required(d, key, f"{path}.{key}"), f"{path}.{key}", max_length=limit, pattern=pattern
        )
        for key, (limit, pattern) in _RD_STRING_FIELDS.items()
    }
    digest = chk.string(
        d.get("imageDigest"),
        f"{path}.imageDigest",
        default="",
        max_length=c.DIGEST_MAX_LENGTH,
        pattern=c.IMAGE_DIGEST_PATTERN,
    )
    disk_type = chk.enum(d.get("diskType"), f"{path}.diskType", DiskType, default=DiskType.PD_BALANCED)
    mode = chk.enum(d.get("mode"), f"{path}.mode", RuntimeMode, default=RuntimeMode.PER_NODE)
    _shared_disk_type(chk, disk_type, mode, f"{path}.diskType")
    mount_path, rid = strings["mountPath"], strings["runtimeId"]
    if mount_path and rid and mount_path != naming.mount_path(rid):
        chk.fail(f"{path}.mountPath", c.RUNTIMEDISK_MESSAGE_MOUNT_PATH)
    size = chk.integer(
        chk.required(d, "diskSizeGb", f"{path}.diskSizeGb"),
        f"{path}.diskSizeGb",
        minimum=c.DISK_SIZE_MIN_GB,
        maximum=c.DISK_SIZE_MAX_GB,
    )
    prefetch = _prefetch(chk, d.get("prefetch"), f"{path}.prefetch")
    if len(chk.errors) > before or not disk_type or not mode or not size or digest is None:
        return None

    def s(key: str) -> str:
        return strings[key] or ""

    return RuntimeDiskSpec(
        node_name=s("nodeName"),
        zone=s("zone"),
        instance=s("instance"),
        project=s("project"),
        image=s("image"),
        image_digest=digest,
        runtime_id=s("runtimeId"),
        disk_name=s("diskName"),
        device_name=s("deviceName"),
        disk_type=disk_type,
        disk_size_gb=size,
        mode=mode,
        mount_path=s("mountPath"),
        prefetch=prefetch,
    )


def _time(chk: _Checker, value: object, path: str) -> datetime | None:
    text = chk.string(value, path)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        chk.fail(path, f"Invalid value: {_quote(text)}: must be an RFC 3339 date-time")
        return None


def _timings(chk: _Checker, raw: object, path: str) -> Timings:
    d = chk.mapping(raw, path) or {}
    durations_raw = chk.mapping(d.get("durationsSeconds"), f"{path}.durationsSeconds") or {}
    durations: dict[str, float] = {}
    for key, value in sorted(durations_raw.items(), key=lambda kv: str(kv[0])):
        if (number := chk.number(value, f"{path}.durationsSeconds[{key}]")) is not None:
            durations[str(key)] = number
    return Timings(
        node_created=_time(chk, d.get("nodeCreated"), f"{path}.nodeCreated"),
        disk_created=_time(chk, d.get("diskCreated"), f"{path}.diskCreated"),
        attached=_time(chk, d.get("attached"), f"{path}.attached"),
        mounted=_time(chk, d.get("mounted"), f"{path}.mounted"),
        verified=_time(chk, d.get("verified"), f"{path}.verified"),
        prefetched=_time(chk, d.get("prefetched"), f"{path}.prefetched"),
        durations_seconds=durations,
    )


def _runtimedisk_status(chk: _Checker, raw: object, path: str) -> RuntimeDiskStatus:
    d = chk.mapping(raw, path) or {}
    phase = chk.enum(d.get("phase"), f"{path}.phase", Phase, default=Phase.PENDING) or Phase.PENDING
    prefetch = None
    if (p := chk.mapping(d.get("prefetch"), f"{path}.prefetch")) is not None:
        prefetch = PrefetchStats(
            bytes=chk.integer(p.get("bytes"), f"{path}.prefetch.bytes", default=0) or 0,
            seconds=chk.number(p.get("seconds"), f"{path}.prefetch.seconds") or 0.0,
            throughput_mbps=chk.number(p.get("throughputMBps"), f"{path}.prefetch.throughputMBps") or 0.0,
        )
    return RuntimeDiskStatus(
        phase=phase,
        device_path=chk.string(d.get("devicePath"), f"{path}.devicePath", default="") or "",
        message=chk.string(d.get("message"), f"{path}.message", default="") or "",
        reason=chk.string(d.get("reason"), f"{path}.reason", default="") or "",
        observed_generation=chk.integer(d.get("observedGeneration"), f"{path}.observedGeneration"),
        conditions=parse_conditions(d.get("conditions")),
        timings=_timings(chk, d.get("timings"), f"{path}.timings"),
        prefetch=prefetch,
    )
