# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One error path for every module: raise one of these, main() turns it into fail_json(msg=...)."""

from __future__ import annotations


class EngineModuleError(Exception):
    """Base class. The message must say what is wrong and what to do about it."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class DockerUnavailableError(EngineModuleError):
    """The Docker daemon cannot be reached, or the Docker SDK is missing."""


class NotFoundError(EngineModuleError):
    """A container, volume, path, image or snapshot that the options name does not exist."""


class BrainError(EngineModuleError):
    """The brain is not an SQLite database, is corrupt, or cannot be read."""


class SnapshotError(EngineModuleError):
    """A snapshot is missing, fails its checksum or its integrity check, or could not be written."""


class InsufficientSpaceError(EngineModuleError):
    """Not enough free space to write a snapshot or a restore."""


class EngineBusyError(EngineModuleError):
    """The brain is in use (an Engine has it open or its container is running)."""


class OptionsError(EngineModuleError):
    """Options that conflict or cannot be satisfied together."""


class ContainerError(EngineModuleError):
    """An Engine's container could not be stopped, renamed, recreated, started or removed."""


class ComposeFileError(EngineModuleError):
    """A compose file or env file cannot be read or changed with certainty (it says what was found)."""


class ComposeError(EngineModuleError):
    """Docker Compose is missing, or a Compose command failed."""


class LockedError(EngineModuleError):
    """Another run holds the Engine's lock and it has not expired."""


class ImagePullError(EngineModuleError):
    """An image could not be pulled (tag missing, registry unreachable, access refused)."""


class EngineAuthError(EngineModuleError):
    """The Engine refused the API key (HTTP 401): the key is missing or wrong."""


class EvalCasesError(EngineModuleError):
    """Eval cases (a cases file or inline cases) that are malformed: it names the case and what is wrong."""


class ForeignSnapshotError(SnapshotError):
    """A snapshot that belongs to another Engine (or cannot tell whose it is) was to be restored over a brain."""


class ReleaseRecordError(EngineModuleError):
    """The record of rolled-back releases on a Docker host cannot be read (corrupt) or written."""


class RolledBackReleaseError(EngineModuleError):
    """The target release was rolled back before and the operator has not acknowledged it; nothing was changed."""


class VolumeUnsupportedError(EngineModuleError):
    """The Engine's /data is not a folder on the Docker host that a volume snapshot can copy (another volume driver,
    a device Docker mounts only while a container runs): it names the volume and what to use instead."""
