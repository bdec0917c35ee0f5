"""From a call's target to the devices it means, for an action or for a question.

Phrases (what the embedded model copies from the utterance) are read by ``NameIndex.phrase`` under
docs/assistant-conventions.md; target objects (a tool-calling model's ``{"area", "kind"}``) by
``NameIndex.resolve``. On top of both: a whole area means what in it can do the action ("거실 다
꺼줘" switches off lights and the TV, not the thermometer), and a question about an area means
the devices that have the attribute asked about ("거실 몇 도야?" reads the thermometer).
"""

from __future__ import annotations

from collections.abc import Mapping

from ondol.home.errors import TargetError
from ondol.home.home import Home

# Which devices answer a question about an area's temperature or humidity, best first.
_READERS = {"temperature": ("temperature", "current_temperature"), "humidity": ("humidity",),
            "motion": ("motion",), "air_quality": ("air_quality",), "pm25": ("pm25",)}


class Resolver:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.names = home.names

    def targets(self, target: str | Mapping[str, str], *, every: bool, action: str) -> list[str]:
        """Devices an action goes to. A whole area narrows to those whose type has the action."""
        if isinstance(target, str):
            ids, how = self.names.phrase(target, every)
            whole_area = how == "area"
        else:
            ids = self.names.resolve(target)
            whole_area = "kind" not in target and "device" not in target
        if whole_area:
            able = [i for i in ids if action in self.home.types[i].actions
                    or (action in ("turn_on", "turn_off") and self.home.types[i].name in ("cover", "lock"))]
            able = [i for i in able if self.home.types[i].name not in ("scene", "lock", "cover")] or able
            if not able:
                raise TargetError(f"Nothing in {target if isinstance(target, str) else target['area']} can do that.")
            return able
        return ids

    def query_targets(self, target: str | Mapping[str, str], *, every: bool, ask: str | None) -> list[str]:
        """Devices a question reads. An area narrows to the devices that have the attribute asked
        about (sensors before appliances that also measure it)."""
        if isinstance(target, str):
            try:
                ids, how = self.names.phrase(target, every)
            except TargetError as e:
                # "불 켜져 있어?" in a home with several lights: a question may read them all.
                if e.ambiguous and ask is not None:
                    return list(e.candidates)
                raise
            whole_area = how == "area"
        else:
            ids = self.names.resolve(target)
            whole_area = "kind" not in target and "device" not in target
        if whole_area and ask is not None:
            for attribute in _READERS.get(ask, (ask,)):
                having = [i for i in ids if attribute in self.home.state(i)]
                if having:
                    return having
            raise TargetError(f"Nothing in {target if isinstance(target, str) else target['area']} reports {ask}.")
        return ids


__all__ = ["Resolver"]
