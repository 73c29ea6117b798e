"""The instances resource (``get``, ``list``, ``insert``, ``delete``, ``attachDisk``, ``detachDisk``, ...).

Also ``aggregatedList``, ``setDiskAutoDelete`` and ``setLabels``, and the block devices behind attachments.

An attach is validated against every attachment, pending ones included (a second READ_WRITE user is
refused with the real ``resourceInUseByAnotherResource``; Hyperdisk access modes per ``access``) and
reserved at once; its operation then sets up a loop device published at
``<devroot>/disk/by-id/google-<deviceName>`` (``_plug``). Detach and instance deletion undo that
(``_unplug``); deleting an instance also deletes its autoDelete disks no other VM uses, as GCE does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdworker_tools.computesim import access, blockdev, errors
from sdworker_tools.computesim import labels as labelmod
from sdworker_tools.computesim.core import Core
from sdworker_tools.computesim.errors import ApiError, OperationFailure
from sdworker_tools.computesim.links import parse_zonal
from sdworker_tools.computesim.models import AttachedDisk, Instance, queue_key
from sdworker_tools.computesim.state import NAME, NAME_RULE, Call, valid_name


class InstanceHandlers(Core):
    def _instances_get(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._instance_json(self._instance_of(call))

    def _instances_list(self, call: Call) -> dict[str, Any]:
        """``instances.list`` and ``instances.aggregatedList``."""
        return self._zonal_list(call, Instance, self._instances, self._instance_json)

    def _new_instance(
        self, project: str, zone: str, name: str, machine_type: str, inst_labels: dict[str, str]
    ) -> Instance:
        """Lock held."""
        if (project, zone, name) in self._instances:
            raise errors.already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
        clash = [i for i in self._instances.values() if i.name == name]
        if clash and self._config.block_devices:
            # Dev roots are keyed by instance name alone (kwok node names are unique), so refuse a twin.
            raise errors.invalid_field(
                "resource.name", name, "The simulator keys dev roots by instance name."
            )
        n = next(self._ips)
        inst = Instance(
            **self._identity(project, zone, name),
            machine_type=machine_type,
            dev_root=self.dev_root(name),
            ip=f"10.128.{n // 250}.{n % 250 + 2}",
            labels=inst_labels,
        )
        self._instances[inst.key] = inst
        return inst

    def _instances_insert(self, call: Call) -> dict[str, Any]:
        project, body = call.project, call.body
        name = valid_name(body.get("name"))
        inst_labels = labelmod.validate(body.get("labels"))
        for spec in body.get("disks") or []:
            if "initializeParams" in spec or not spec.get("source"):
                raise errors.invalid(
                    "The simulator's instances.insert takes existing disks only (disks[].source); "
                    "create boot disks with disks.insert first."
                )
        with self._lock:
            zone = self._known_zone(call)
            machine_type = "n1-standard-4"
            if body.get("machineType"):
                mt = parse_zonal(
                    str(body["machineType"]),
                    "machineTypes",
                    project=project,
                    zone=zone,
                    field_name="resource.machineType",
                )
                machine_type = mt.name
            if (project, zone, name) in self._instances:
                raise errors.already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
            self._admit((queue_key("instance", (project, zone, name)),))
            inst = self._new_instance(project, zone, name, machine_type, inst_labels)
            attachments = []
            try:
                for i, spec in enumerate(body.get("disks") or []):
                    attachments.append(
                        self._reserve_attachment(inst, spec, index=i, boot=bool(spec.get("boot")))
                    )
            except ApiError:
                del self._instances[inst.key]
                raise

            def effect() -> None:
                for att in attachments:
                    self._plug(inst, att)
                with self._lock:
                    inst.status = "RUNNING"

            def abort(failure: OperationFailure) -> None:
                for att in attachments:
                    self._unplug(inst, att)
                with self._lock:
                    self._instances.pop(inst.key, None)

            return self._accept(call, inst, effect=effect, abort=abort)

    def _instances_delete(self, call: Call) -> dict[str, Any]:
        with self._lock:
            inst = self._instance_of(call)
            self._admit((inst.queue_key,))
            inst.status = "STOPPING"

            def effect() -> None:
                with self._lock:
                    attachments = list(inst.disks)
                for att in attachments:
                    self._unplug(inst, att)
                doomed = []
                with self._lock:
                    for att in attachments:
                        disk = self._disks.get(att.disk)
                        # GCE keeps an autoDelete disk that another VM still uses.
                        if (
                            disk is not None
                            and att.auto_delete
                            and not att.pending
                            and not self._disk_users(disk.key)
                        ):
                            del self._disks[disk.key]
                            doomed.append(disk)
                    self._instances.pop(inst.key, None)
                for disk in doomed:
                    if disk.file is not None:
                        blockdev.remove_file(disk.file)
                prune_dev_root(inst.dev_root, self.dev_base)

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    inst.status = "RUNNING"

            return self._accept(call, inst, effect=effect, abort=abort)

    def _reserve_attachment(
        self, inst: Instance, spec: Mapping[str, Any], *, index: int | None = None, boot: bool = False
    ) -> AttachedDisk:
        """Validate an attach against every attachment, pending ones included, and reserve it. Lock held."""
        source = spec.get("source")
        if not source:
            raise errors.required("resource.source")
        ref = parse_zonal(
            str(source), "disks", project=inst.project, zone=inst.zone, field_name="resource.source"
        )
        if ref.zone != inst.zone:
            raise errors.invalid_field(
                "resource.source", source, "Disk must be in the same zone as the instance."
            )
        disk = self._disk(ref.project, ref.zone or inst.zone, ref.name)
        disk_path = f"projects/{disk.project}/zones/{disk.zone}/disks/{disk.name}"
        if disk.status != "READY":
            raise errors.not_ready(disk_path)
        mode = spec.get("mode") or "READ_WRITE"
        if mode not in ("READ_WRITE", "READ_ONLY"):
            raise errors.invalid_field("resource.mode", mode, "Must be READ_WRITE or READ_ONLY.")
        others = []
        for other, att in self._disk_users(disk.key):
            user = f"projects/{other.project}/zones/{other.zone}/instances/{other.name}"
            if other is inst:
                raise errors.in_use(disk_path, user)
            others.append((user, att.mode))
        access.check_attach(
            disk_path=disk_path,
            disk_type=disk.type_name,
            access_mode=disk.access_mode,
            attach_mode=mode,
            others=others,
        )
        if index is None:
            index = max((a.index for a in inst.disks), default=0) + 1
        device_name = spec.get("deviceName") or f"persistent-disk-{index}"
        if not isinstance(device_name, str) or NAME.fullmatch(device_name) is None:
            raise errors.invalid_field("resource.deviceName", device_name, NAME_RULE)
        if inst.attachment(device_name, include_pending=True) is not None:
            raise errors.invalid_field(
                "resource.deviceName", device_name, "A disk with this device name is already attached."
            )
        att = AttachedDisk(
            disk=disk.key,
            device_name=device_name,
            mode=mode,
            auto_delete=bool(spec.get("autoDelete", False)),
            index=index,
            boot=boot,
        )
        inst.disks.append(att)
        return att

    def _plug(self, inst: Instance, att: AttachedDisk) -> None:
        """The attach's effect: loop device, by-id symlinks, then the attachment is visible."""
        with self._lock:
            disk = self._disks.get(att.disk)
            file = disk.file if disk is not None else None
        if disk is None:
            raise errors.not_found(f"projects/{att.disk[0]}/zones/{att.disk[1]}/disks/{att.disk[2]}")
        if self._config.block_devices and file is not None:
            att.loop = blockdev.attach_loop(file, read_only=att.mode == "READ_ONLY")
            try:
                blockdev.publish(inst.dev_root, att.device_name, att.loop)
            except OSError as exc:
                blockdev.detach_loop(att.loop, file)
                att.loop = None
                raise blockdev.BlockDeviceError(f"publishing {att.device_name}: {exc}") from exc
        with self._lock:
            att.pending = False
            disk.users.append(inst.key)
            disk.last_attach = time.time()

    def _unplug(self, inst: Instance, att: AttachedDisk) -> None:
        """Detach's effect (and attach's undo): symlinks, loop device, bookkeeping."""
        blockdev.unpublish(inst.dev_root, att.device_name)
        with self._lock:
            disk = self._disks.get(att.disk)
            file = disk.file if disk is not None else None
        if att.loop is not None and file is not None:
            blockdev.detach_loop(att.loop, file)
        with self._lock:
            att.loop = None
            if att in inst.disks:
                inst.disks.remove(att)
            if disk is not None:
                if inst.key in disk.users:
                    disk.users.remove(inst.key)
                if not att.pending:
                    disk.last_detach = time.time()

    def _instances_attach(self, call: Call) -> dict[str, Any]:
        with self._lock:
            inst = self._instance_of(call)
            if inst.status == "STOPPING":
                raise errors.not_ready(f"projects/{inst.project}/zones/{inst.zone}/instances/{inst.name}")
            disk_key = inst.queue_key
            if call.body.get("source"):
                ref = parse_zonal(
                    str(call.body["source"]),
                    "disks",
                    project=inst.project,
                    zone=inst.zone,
                    field_name="resource.source",
                )
                disk_key = queue_key("disk", (ref.project, ref.zone or "", ref.name))
            self._admit((inst.queue_key, disk_key))
            att = self._reserve_attachment(inst, call.body)
            return self._accept(
                call,
                inst,
                also=(disk_key,),
                effect=lambda: self._plug(inst, att),
                abort=lambda _: self._unplug(inst, att),
            )

    def _attachment_of(self, call: Call, inst: Instance) -> AttachedDisk:
        """The attachment ``deviceName`` names (pending ones included)."""
        device_name = call.query.get("deviceName", "")
        att = inst.attachment(device_name, include_pending=True)
        if att is None:
            raise errors.invalid_field(
                "deviceName", device_name, f"No attached disk found with device name '{device_name}'."
            )
        return att

    def _instances_detach(self, call: Call) -> dict[str, Any]:
        if not call.query.get("deviceName"):
            raise errors.required("deviceName")
        with self._lock:
            inst = self._instance_of(call)
            att = self._attachment_of(call, inst)
            if att.detaching:
                raise errors.invalid_field(
                    "deviceName",
                    att.device_name,
                    f"No attached disk found with device name '{att.device_name}'.",
                )
            disk_key = queue_key("disk", att.disk)
            self._admit((inst.queue_key, disk_key))
            att.detaching = True

            def abort(failure: OperationFailure) -> None:
                with self._lock:
                    att.detaching = False

            return self._accept(
                call, inst, also=(disk_key,), effect=lambda: self._unplug(inst, att), abort=abort
            )

    def _instances_set_auto_delete(self, call: Call) -> dict[str, Any]:
        if not call.query.get("deviceName"):
            raise errors.required("deviceName")
        raw = call.query.get("autoDelete")
        if raw not in ("true", "false", "True", "False"):
            raise errors.required("autoDelete")
        auto_delete = raw.lower() == "true"
        with self._lock:
            inst = self._instance_of(call)
            att = self._attachment_of(call, inst)

            def effect() -> None:
                with self._lock:
                    att.auto_delete = auto_delete

            return self._accept(call, inst, effect=effect)

    def _instances_set_labels(self, call: Call) -> dict[str, Any]:
        with self._lock:
            return self._set_labels(call, self._instance_of(call))


def prune_dev_root(dev_root: Path, dev_base: Path) -> None:
    """Remove the by-id directory chain up to the instance's directory, if we left it empty."""
    by_id = blockdev.by_id_dir(dev_root)
    for directory in (by_id, by_id.parent, dev_root, dev_root.parent):
        if directory == dev_base or dev_base not in directory.parents:
            break
        try:
            directory.rmdir()
        except OSError:
            break
