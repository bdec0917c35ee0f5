"""Target resolution: from the words people (or a model) use to the ids of devices.

Matching is normalisation plus exact lookup, never fuzzy guessing: a wrong guess would switch off
the wrong device, while an error with candidates lets the assistant ask. Close spellings are only
ever *suggested* in error messages.

* ``normalize``: NFKC (so full-width ＴＶ from a Korean IME is TV), casefold, and drop spaces and
  punctuation, so "거실에어컨" = "거실 에어컨" and "Living-Room AC" = "living room ac".
* Korean particles: up to two trailing particles are removed ("거실 에어컨을", "안방에서도"), but only
  when what is left is a known name, so a name that merely ends in a particle-like syllable is
  never cut ("거실 불" stays whole if it is a name). English plurals ("lights") work the same way.
* A device name may also be an area name followed by a device name or a kind word, in one string:
  "안방 스탠드", "거실 조명", "living room lights". It resolves when exactly one device in that
  area fits; when several do it is ambiguous (all lights in the living room is an area + kind
  target, which the assistant chooses, not this module).
* A kind word alone names a device when the home has exactly one of that kind ("에어컨 켜줘").

Device classes narrow kinds: "커튼" means covers whose device_class is curtain, never the garage
door. Shared aliases between devices are allowed in the home file; resolving one is an ambiguity.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ondol.home.errors import TargetError

if TYPE_CHECKING:
    from ondol.home.devices import DeviceType
    from ondol.home.homefile import DeviceSpec, HomeSpec

# Longest first is not needed for correctness (every strip is tried), only for readable order.
PARTICLES = ("이랑", "으로", "에서", "에게", "한테", "하고", "까지", "부터",
             "을", "를", "이", "가", "은", "는", "도", "에", "의", "로", "와", "과", "랑", "만", "좀")
MAX_PARTICLES = 2
# Between an area and the device word: "거실의 조명", "거실에 있는 조명", "거실 쪽 커튼".
AREA_LINKS = ("에있는", "에서", "의", "에", "쪽")
# Quantifiers around a kind word ("모든 조명", "조명 전부", "all lights"), accepted by kind().
ALL_PREFIXES = ("모든", "전체", "전부", "all", "every", "the")
ALL_SUFFIXES = ("전부", "모두", "다", "all")




def normalize(name: str) -> str:
    """The form names are compared in: NFKC, casefolded, without spaces, punctuation or controls."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(c for c in text if unicodedata.category(c)[0] not in "ZPC")


def _strips(form: str) -> list[str]:
    """Every form one particle (or an English plural ending) shorter than ``form``."""
    out = [form[: -len(p)] for p in PARTICLES if form.endswith(p) and len(form) > len(p)]
    if form.isascii() and len(form) > 2 and form.endswith("s"):
        out += [form[:-1]] + ([form[:-2]] if form.endswith("es") else [])
    return out


def _lookup(table: Mapping[str, frozenset[str]], name: str) -> frozenset[str]:
    """Ids whose name is ``name`` (normalised), else with up to MAX_PARTICLES particles removed.

    Fewer removals win: if "거실불" is a name, "거실불을" never reaches "거실" + something."""
    level = [normalize(name)]
    for _ in range(MAX_PARTICLES + 1):
        found = frozenset().union(*(table.get(f, frozenset()) for f in level))
        if found:
            return found
        level = list(dict.fromkeys(s for f in level for s in _strips(f)))
        if not level:
            break
    return frozenset()


@dataclass(frozen=True)
class Kind:
    """What a kind word selects: a device type, optionally narrowed to one device class."""

    type: str
    device_class: str | None = None

    def matches(self, device: DeviceSpec) -> bool:
        return device.type == self.type and (self.device_class is None or device.device_class == self.device_class)


def kind_table(types: Mapping[str, DeviceType]) -> dict[str, frozenset[Kind]]:
    """normalised kind word -> the kinds it selects, from the types' names, kind_names and class_names.

    Only class_names make class words: bare class ids are form factors ("wall", "ceiling" of air
    conditioners and fans alike) that people do not call their devices by."""
    table: dict[str, set[Kind]] = {}
    for name, dtype in types.items():
        for word in (name, name.replace("_", " "), getattr(dtype, "label", name), *getattr(dtype, "kind_names", ())):
            table.setdefault(normalize(word), set()).add(Kind(name))
    for name, dtype in types.items():
        for cls, words in getattr(dtype, "class_names", {}).items():
            for word in words:
                kinds = table.setdefault(normalize(word), set())
                # A class word is narrower than its type's words: "blind" must not mean all covers.
                kinds.discard(Kind(name))
                kinds.add(Kind(name, cls))
    return {word: frozenset(kinds) for word, kinds in table.items() if word}


def _index(pairs: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for name, item_id in pairs:
        if normalize(name):
            table.setdefault(normalize(name), set()).add(item_id)
    return {k: frozenset(v) for k, v in table.items()}


class NameIndex:
    """Resolves names and targets against one home. Built once per home; never changes afterwards.

    ``types`` defaults to ondol.home.devices.DEVICE_TYPES (only kind, class and label words are read).
    Every error is a TargetError whose ``candidates`` are the ids worth offering."""

    def __init__(self, spec: HomeSpec, types: Mapping[str, DeviceType] | None = None):
        if types is None:
            from ondol.home.devices import DEVICE_TYPES as types
        self.spec = spec
        self._devices: dict[str, DeviceSpec] = {d.id: d for d in spec.devices}
        self._order = {d.id: i for i, d in enumerate(spec.devices)}
        self._area_labels = {a.id: (a.names[0] if a.names else a.id) for a in spec.areas}
        self._type_labels = {name: getattr(t, "label", name.replace("_", " ")) for name, t in types.items()}
        self._device_names = _index((n, d.id) for d in spec.devices for n in (d.id, *d.names))
        self._area_names = _index((n, a.id) for a in spec.areas for n in (a.id, *a.names))
        self._kinds = kind_table(types)
        # Area names, longest first, for splitting "거실에어컨" into area + rest.
        self._area_prefixes = sorted(self._area_names, key=len, reverse=True)

    @classmethod
    def from_spec(cls, spec: HomeSpec, types: Mapping[str, DeviceType] | None = None) -> NameIndex:
        return cls(spec, types)

    # -- names ----------------------------------------------------------------------------

    def device(self, name: str) -> str:
        """The id of the one device ``name`` means."""
        ids = self._device_ids(name)
        if len(ids) == 1:
            return ids[0]
        if ids:
            raise TargetError(f"{_show(name)} could mean {len(ids)} devices: {self._labels(ids)}. "
                              f"Name one of them{self._all_hint(ids)}.", ids, ambiguous=True)
        if _lookup(self._area_names, name):
            raise TargetError(f"{_show(name)} is an area, not a device: target it as {{\"area\": {_show(name)}}},"
                              f" with a \"kind\" to choose which of its devices.")
        kinds = self._find_kinds(name)
        if kinds:
            raise TargetError(f"This home has no {self._kind_label(kinds)}.")
        raise TargetError(f"No device is called {_show(name)}."
                          f"{self._suggest(name, self._device_names, self._device_label)}",
                          self._close(name, self._device_names))

    def area(self, name: str) -> str:
        """The id of the area ``name`` means (area names are unique: homefile.py enforces it)."""
        if name in self._area_labels:
            return name
        ids = sorted(_lookup(self._area_names, name))
        if len(ids) == 1:
            return ids[0]
        if ids:  # only reachable with a spec that homefile.py did not validate
            raise TargetError(f"{_show(name)} could mean the areas {', '.join(ids)}.", ids)
        known = ", ".join(self._area_labels.values()) or "none"
        raise TargetError(f"No area is called {_show(name)}."
                          f"{self._suggest(name, self._area_names, self._area_labels.__getitem__)}"
                          f" The areas: {known}.", self._close(name, self._area_names))

    def kinds(self, word: str) -> frozenset[Kind]:
        """The kinds a kind word selects ("조명", "모든 조명", "lights", "커튼")."""
        kinds = self._find_kinds(word)
        if not kinds:
            known = ", ".join(sorted({k.type for ks in self._kinds.values() for k in ks}))
            close = difflib.get_close_matches(normalize(word), list(self._kinds), n=1, cutoff=0.6)
            hint = f" Did you mean {_show(close[0])}?" if close else ""
            raise TargetError(f"{_show(word)} is not a kind of device.{hint} The kinds: {known}.")
        return kinds

    def kind(self, word: str) -> str:
        """The device type a kind word means."""
        types = sorted({k.type for k in self.kinds(word)})
        if len(types) > 1:
            raise TargetError(f"{_show(word)} could mean the device types {', '.join(types)}.", types)
        return types[0]

    # -- targets --------------------------------------------------------------------------

    def resolve(self, target: Mapping[str, Any]) -> list[str]:
        """Device ids (in home-file order) a target means; never an empty list.

        ``{"device": name}``, optionally with ``"area"`` to pick among devices sharing a name;
        ``{"area": a, "kind": k}``; ``{"kind": k}`` (the whole home); ``{"area": a}`` (all of it)."""
        shapes = '{"device"}, {"area", "kind"}, {"kind"}, {"area"} or {"device", "area"}'
        if not isinstance(target, Mapping):
            raise TargetError(f"A target is an object, one of {shapes}; got {_show(target)}.")
        keys = set(target)
        if keys - {"device", "area", "kind"} or not keys or {"device", "kind"} <= keys:
            raise TargetError(f"A target is one of {shapes}; got the keys {', '.join(sorted(keys)) or 'none'}.")
        for key, value in target.items():
            if not isinstance(value, str) or not normalize(value):
                raise TargetError(f"The target's {_show(key)} must be a name, not {_show(value)}.")
        area = self.area(target["area"]) if "area" in target else None
        if "device" in target:
            return [self.device(target["device"]) if area is None else self._device_in_area(target["device"], area)]
        kinds = self.kinds(target["kind"]) if "kind" in target else None
        ids = [d.id for d in self._devices.values()
               if (area is None or d.area == area) and (kinds is None or any(k.matches(d) for k in kinds))]
        if ids:
            return ids
        if kinds is not None and area is None:
            raise TargetError(f"This home has no {self._kind_label(kinds)}.")
        where = self._area_labels[area]
        here = [d.id for d in self._devices.values() if d.area == area]
        if kinds is None:
            raise TargetError(f"There are no devices in {where}.")
        has = f" It has: {self._labels(here)}." if here else " It has no devices."
        raise TargetError(f"There is no {self._kind_label(kinds)} in {where}.{has}", here)

    def phrase(self, phrase: str, every: bool = False) -> tuple[list[str], str]:
        """Device ids a spoken phrase means (docs/assistant-conventions.md), and how it was read:
        "name" (a device's name, possibly after its area), "area+kind" (every such device in the
        area), "area" (everything in it) or "kind" (the one such device, or all with ``every``).
        A name or kind that fits several devices without ``every`` is an ambiguous TargetError.
        With ``every``, an area + kind reading beats a name ("all the living room lights" is every
        light there, even if one is named "living room light")."""
        if every:
            try:
                ids, how = self._area_phrase(phrase, every, names=False)
                if ids:
                    return ids, how
            except TargetError:
                pass
        found = _lookup(self._device_names, phrase)
        if found:
            return self._one_or_all(phrase, found, every), "name"
        areas = _lookup(self._area_names, phrase)
        if len(areas) == 1:
            (area,) = areas
            return [d.id for d in self._devices.values() if d.area == area], "area"
        ids, how = self._area_phrase(phrase, every, names=True)
        if ids:
            return ids, how
        kinds = self._find_kinds(phrase)
        if kinds:
            ids = self._ordered(d.id for d in self._devices.values() if any(k.matches(d) for k in kinds))
            if not ids:
                raise TargetError(f"This home has no {self._kind_label(kinds)}.")
            return self._one_or_all(phrase, ids, every), "kind"
        self.device(phrase)  # raises the not-found error with its suggestions
        raise TargetError(f"No device is called {_show(phrase)}.")  # unreachable: device() found nothing above

    def _area_phrase(self, phrase: str, every: bool, names: bool) -> tuple[list[str], str]:
        """An area name followed by a device name in it ("name") or a kind word ("area+kind");
        ([], "") when the phrase does not start with an area."""
        for area, here, names_here, form in self._area_forms(normalize(phrase)):
            found = _lookup(names_here, form) if names else frozenset()
            if found:
                return self._one_or_all(phrase, found, every), "name"
            kinds = self._find_kinds(form)
            if kinds:
                ids = self._ordered(i for i in here if any(k.matches(self._devices[i]) for k in kinds))
                if not ids:
                    raise TargetError(f"There is no {self._kind_label(kinds)} in {self._area_labels[area]}.",
                                      self._ordered(here))
                return ids, "area+kind"
        return [], ""

    def _area_forms(self, n: str):
        """(area, its device ids, its device-name table, the rest) for each way the normalised
        ``n`` reads as "<area><rest>" ("거실조명", "거실에있는조명"), longest area name first."""
        for prefix in self._area_prefixes:
            areas = self._area_names[prefix]
            if not (n.startswith(prefix) and len(n) > len(prefix)) or len(areas) != 1:
                continue
            (area,) = areas
            rest = n[len(prefix):]
            here = frozenset(d.id for d in self._devices.values() if d.area == area)
            names_here = {k: v & here for k, v in self._device_names.items() if v & here}
            for form in [rest, *(rest[len(link):] for link in AREA_LINKS if rest.startswith(link) and len(rest) > len(link))]:
                yield area, here, names_here, form

    def _ordered(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=self._order.__getitem__)

    def _one_or_all(self, phrase: str, ids: Iterable[str], every: bool) -> list[str]:
        ids = self._ordered(ids)
        if len(ids) > 1 and not every:
            raise TargetError(f"{_show(phrase)} could mean {len(ids)} devices: {self._labels(ids)}. "
                              f"Name one of them, or say all of them.", ids, ambiguous=True)
        return ids

    # -- internals ------------------------------------------------------------------------

    def _device_ids(self, name: str) -> list[str]:
        if name in self._devices:  # an id as written is always exactly its device
            return [name]
        found = _lookup(self._device_names, name) or self._area_split(normalize(name))
        if not found:  # a kind word alone: the device, if the home has just one of that kind
            kinds = self._find_kinds(name)
            found = frozenset(d.id for d in self._devices.values() if any(k.matches(d) for k in kinds))
        return sorted(found, key=self._order.__getitem__)

    def _area_split(self, n: str) -> frozenset[str]:
        """Devices meant by "<area><device name or kind word>" such as "안방스탠드", "거실조명을"."""
        for _, here, names_here, form in self._area_forms(n):
            found = _lookup(names_here, form)
            if not found:
                kinds = self._find_kinds(form)
                found = frozenset(i for i in here if any(k.matches(self._devices[i]) for k in kinds))
            if found:
                return found
        return frozenset()

    def _device_in_area(self, name: str, area: str) -> str:
        ids = [i for i in self._device_ids(name) if self._devices[i].area == area]
        if not ids:
            # "스탠드" + area: a shared alias narrowed by the area, or a kind word within it.
            ids = sorted(self._area_split(normalize(self._area_labels[area]) + normalize(name)), key=self._order.__getitem__)
        if len(ids) == 1:
            return ids[0]
        where = self._area_labels[area]
        if ids:
            raise TargetError(f"{_show(name)} in {where} could mean {len(ids)} devices: {self._labels(ids)}. "
                              f"Name one of them{self._all_hint(ids)}.", ids, ambiguous=True)
        here = [d.id for d in self._devices.values() if d.area == area]
        raise TargetError(f"There is no device called {_show(name)} in {where}."
                          + (f" It has: {self._labels(here)}." if here else " It has no devices."), here)

    def _find_kinds(self, word: str) -> frozenset[Kind]:
        for form in _without_quantifier(normalize(word)):
            found = _lookup(self._kinds, form)
            if found:
                return found
        return frozenset()

    def _kind_label(self, kinds: Iterable[Kind]) -> str:
        return " or ".join(sorted({self._type_labels.get(k.type, k.type) if k.device_class is None
                                   else k.device_class.replace("_", " ") for k in kinds}))

    def _device_label(self, device_id: str) -> str:
        d = self._devices[device_id]
        parts = [_show(d.names[0])] if d.names else []
        if d.area is not None:
            parts.append(f"in {self._area_labels.get(d.area, d.area)}")
        return f"{d.id} ({', '.join(parts)})" if parts else d.id

    def _labels(self, ids: Iterable[str]) -> str:
        return ", ".join(self._device_label(i) for i in ids)

    def _all_hint(self, ids: list[str]) -> str:
        # When the candidates are all of one type in one area, say how to mean all of them.
        devices = [self._devices[i] for i in ids]
        if len({d.type for d in devices}) == 1 and len({d.area for d in devices}) == 1 and devices[0].area:
            return (f", or target all of them with {{\"area\": {_show(devices[0].area)}, "
                    f"\"kind\": {_show(devices[0].type)}}}")
        return ""

    @staticmethod
    def _close(name: str, table: Mapping[str, frozenset[str]]) -> list[str]:
        words = difflib.get_close_matches(normalize(name), list(table), n=3, cutoff=0.5)  # 거신 ~ 거실
        return list(dict.fromkeys(i for w in words for i in sorted(table[w])))

    def _suggest(self, name: str, table: Mapping[str, frozenset[str]], label: Callable[[str], str]) -> str:
        close = self._close(name, table)
        return f" Did you mean {' or '.join(label(i) for i in close)}?" if close else ""


def _without_quantifier(n: str) -> list[str]:
    """``n`` and ``n`` without "모든"/"all" before or "다"/"전부" after (kind words only)."""
    forms = [n, *(n[len(p):] for p in ALL_PREFIXES if n.startswith(p) and len(n) > len(p))]
    return forms + [f[: -len(s)] for f in forms for s in ALL_SUFFIXES if f.endswith(s) and len(f) > len(s)]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return repr(value)

