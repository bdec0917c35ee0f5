"""Target resolution: aliases, ids, Korean spacing and particles, area + kind, and errors with candidates."""

import textwrap

import pytest

from ondol.home.errors import HomeError
from ondol.home.homefile import parse_home
from ondol.home.names import PARTICLES, NameIndex, TargetError, normalize

HOME = textwrap.dedent("""\
    home: names
    areas:
      - {id: living_room, names: [거실, living room]}
      - {id: bedroom, names: [안방, master bedroom]}
      - {id: study, names: [서재]}
      - {id: garage, names: [차고]}
    devices:
      - {id: ac.living, type: air_conditioner, names: [거실 에어컨, living room AC], area: living_room}
      - {id: light.living.main, type: light, names: [거실 메인등], area: living_room}
      - {id: light.living.lamp, type: light, names: [스탠드], area: living_room}
      - {id: light.bedroom, type: light, names: [안방 스탠드, 스탠드], area: bedroom}
      - {id: curtain.bedroom, type: cover, device_class: curtain, area: bedroom}
      - {id: garage.door, type: cover, device_class: garage_door, names: [차고 문], area: garage}
      - {id: tv, type: tv, names: [티비, 거실 TV], area: living_room}
      - {id: fridge, type: refrigerator, names: [냉장고]}
      - {id: purifier.1, type: air_purifier, names: [공기청정기 1], area: study}
      - {id: purifier.2, type: air_purifier, names: [공기청정기 2], area: study}
    """)


@pytest.fixture(scope="module")
def index() -> NameIndex:
    return NameIndex(parse_home(HOME, "names.yaml"))


def error(call, *args) -> TargetError:
    with pytest.raises(TargetError) as info:
        call(*args)
    assert isinstance(info.value, HomeError)
    return info.value


def test_normalize():
    assert normalize("거실 에어컨") == normalize("거실에어컨") == "거실에어컨"
    assert normalize("Living-Room  AC!") == "livingroomac"
    assert normalize("ＴＶ") == "tv"  # full-width letters from a Korean IME
    assert normalize("\u1100\u1161\u11a8") == normalize("각")  # decomposed jamo = the syllable
    assert normalize(" \t") == ""


def test_aliases_and_ids(index):
    assert index.device("ac.living") == "ac.living"
    assert index.device("거실 에어컨") == "ac.living"
    assert index.device("거실에어컨") == "ac.living"
    assert index.device("Living Room AC") == "ac.living"
    assert index.device("LIVING ROOM ac") == "ac.living"
    assert index.device("거실 TV") == "tv" and index.device("거실tv") == "tv"
    assert index.device("AC.Living") == "ac.living"  # an id, normalised like any name


@pytest.mark.parametrize("name", ["거실 에어컨을", "거실에어컨을", "거실 에어컨 좀", "거실 에어컨도", "거실 에어컨에서",
                                  "거실 에어컨을 좀", "living room AC를"])
def test_particles(index, name):
    assert index.device(name) == "ac.living"


def test_particles_only_strip_to_known_names(index):
    assert "을" in PARTICLES and "으로" in PARTICLES
    # "냉장고" ends in no particle; "냉장고를" strips to it; "냉장" is nothing, so no strip can reach it
    assert index.device("냉장고를") == "fridge"
    assert str(error(index.device, "냉장")).startswith('No device is called "냉장".')


def test_area_plus_name_or_kind_in_one_string(index):
    assert index.device("안방 스탠드") == "light.bedroom"  # the alias narrowed by the area
    assert index.device("안방 불을") == "light.bedroom"  # area + kind word + particle
    assert index.device("안방에 있는 조명") == "light.bedroom"
    assert index.device("안방 커튼") == "curtain.bedroom"
    assert index.device("master bedroom light") == "light.bedroom"
    assert index.device("차고 문을") == "garage.door"
    assert index.device("서재 공기청정기 1") == "purifier.1"


def test_a_kind_word_alone_names_the_only_device_of_that_kind(index):
    assert index.device("에어컨") == "ac.living"
    assert index.device("커튼을") == "curtain.bedroom"  # a class word: never the garage door
    assert index.device("aircon") == "ac.living"


def test_ambiguous_names_list_candidates(index):
    err = error(index.device, "스탠드")
    assert err.candidates == ("light.living.lamp", "light.bedroom")
    assert str(err).startswith('"스탠드" could mean 2 devices: light.living.lamp ("스탠드", in 거실), '
                               'light.bedroom ("안방 스탠드", in 안방). Name one of them')
    err = error(index.device, "거실 조명")
    assert err.candidates == ("light.living.main", "light.living.lamp")
    assert 'target all of them with {"area": "living_room", "kind": "light"}' in str(err)
    assert error(index.device, "공기청정기").candidates == ("purifier.1", "purifier.2")


def test_unknown_names_suggest(index):
    err = error(index.device, "거실 에어콘")
    assert err.candidates == ("ac.living",)
    assert str(err) == 'No device is called "거실 에어콘". Did you mean ac.living ("거실 에어컨", in 거실)?'
    assert str(error(index.device, "세탁기")) == "This home has no washer."
    assert str(error(index.device, "거실")).startswith('"거실" is an area, not a device')
    err = error(index.area, "거신")
    assert err.candidates == ("living_room",) and str(err).startswith('No area is called "거신". Did you mean 거실?')


def test_area_and_kind(index):
    assert index.area("거실") == "living_room" == index.area("living_room") == index.area("Living Room")
    assert index.area("거실에서") == "living_room" and index.area("안방에는") == "bedroom"
    assert index.kind("조명") == "light" == index.kind("lights") == index.kind("불을") == index.kind("모든 조명")
    assert index.kind("에어컨") == "air_conditioner" and index.kind("air_conditioner") == "air_conditioner"
    assert index.kind("커튼") == "cover"
    err = error(index.kind, "토스터")
    assert str(err).startswith('"토스터" is not a kind of device')


def test_resolve(index):
    assert index.resolve({"device": "거실에어컨을"}) == ["ac.living"]
    assert index.resolve({"area": "거실", "kind": "조명"}) == ["light.living.main", "light.living.lamp"]
    assert index.resolve({"kind": "모든 조명"}) == ["light.living.main", "light.living.lamp", "light.bedroom"]
    assert index.resolve({"kind": "all lights"}) == index.resolve({"kind": "light"})
    assert index.resolve({"kind": "커튼"}) == ["curtain.bedroom"]  # not the garage door
    assert index.resolve({"kind": "cover"}) == ["curtain.bedroom", "garage.door"]
    assert index.resolve({"area": "안방"}) == ["light.bedroom", "curtain.bedroom"]
    assert index.resolve({"device": "스탠드", "area": "안방"}) == ["light.bedroom"]
    assert index.resolve({"device": "스탠드", "area": "living_room"}) == ["light.living.lamp"]
    assert index.resolve({"device": "불", "area": "안방"}) == ["light.bedroom"]


def test_resolve_errors(index):
    err = error(index.resolve, {"area": "안방", "kind": "에어컨"})
    assert str(err).startswith("There is no air conditioner in 안방. It has: light.bedroom")
    assert err.candidates == ("light.bedroom", "curtain.bedroom")
    assert str(error(index.resolve, {"kind": "세탁기"})) == "This home has no washer."
    assert str(error(index.resolve, {"kind": "블라인드"})) == "This home has no blind."
    assert "one of" in str(error(index.resolve, {"device": "tv", "kind": "tv"}))
    assert "one of" in str(error(index.resolve, {}))
    assert "one of" in str(error(index.resolve, {"room": "거실"}))
    assert "must be a name" in str(error(index.resolve, {"device": 3}))
    assert error(index.resolve, {"device": "조명", "area": "거실"}).candidates == ("light.living.main", "light.living.lamp")
    assert str(error(index.resolve, {"device": "에어컨", "area": "안방"})).startswith(
        'There is no device called "에어컨" in 안방. It has:')


def test_shared_alias_resolves_inside_an_area_only():
    spec = parse_home("home: h\nareas: [{id: a, names: [방]}]\ndevices:\n"
                      "  - {id: x, type: light, names: [불빛], area: a}\n  - {id: y, type: light, names: [불빛]}\n")
    index = NameIndex.from_spec(spec)
    assert error(index.device, "불빛").candidates == ("x", "y")
    assert index.device("방 불빛") == "x"
