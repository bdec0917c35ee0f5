"""Random homes for the embedded model's training data.

Every example is said in a home made up for it, so the model meets thousands of room and device
names and learns to copy the ones it hears rather than remember a few. Names are built the way
families name things: area + kind word ("거실 조명", "bedroom AC"), a form factor ("스탠드 에어컨",
"벽걸이 에어컨"), a plain kind word when there is one of a kind ("세탁기"), or a nickname ("무드등").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ondol.home.homefile import AreaSpec, DeviceSpec, HomeSpec

# (id, Korean names, English names); the first Korean name is the one most people use.
AREAS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("living_room", ("거실",), ("living room", "lounge")),
    ("master_bedroom", ("안방", "큰방"), ("master bedroom",)),
    ("bedroom", ("침실",), ("bedroom",)),
    ("small_room", ("작은방",), ("small room", "spare room")),
    ("kids_room", ("아이방", "애들방"), ("kids room", "kids' room")),
    ("study", ("서재", "공부방"), ("study", "office")),
    ("kitchen", ("주방", "부엌"), ("kitchen",)),
    ("dining_room", ("식당", "다이닝룸"), ("dining room",)),
    ("bathroom", ("욕실", "화장실"), ("bathroom",)),
    ("entrance", ("현관",), ("entrance", "entryway")),
    ("balcony", ("베란다", "발코니"), ("balcony",)),
    ("utility_room", ("다용도실", "세탁실"), ("utility room", "laundry room")),
    ("dressing_room", ("드레스룸", "옷방"), ("dressing room", "closet")),
    ("garage", ("차고",), ("garage",)),
    ("guest_room", ("손님방",), ("guest room",)),
    ("hallway", ("복도",), ("hallway", "hall")),
    ("attic", ("다락방",), ("attic",)),
    ("basement", ("지하실",), ("basement",)),
    ("yard", ("마당",), ("yard", "garden")),
    ("terrace", ("테라스",), ("terrace", "patio")),
    ("playroom", ("놀이방",), ("playroom",)),
    ("first_room", ("첫째 방", "큰애 방"), ("first kid's room",)),
    ("second_room", ("둘째 방", "작은애 방"), ("second kid's room",)),
    ("grandma_room", ("할머니 방",), ("grandma's room",)),
    ("upstairs_living", ("2층 거실",), ("upstairs living room",)),
    ("office_room", ("작업실",), ("workroom", "studio")),
    ("laundry", ("빨래방",), ("laundry",)),
    ("pantry", ("팬트리",), ("pantry",)),
)

# Kind words people say, per (type, device_class): Korean, English. A subset of the kind table in
# ondol/home/devices.py, which holds every word the resolver accepts.
KINDS: dict[tuple[str, str | None], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("light", None): (("조명", "불", "전등", "등"), ("light", "lamp")),
    ("switch", None): (("스위치",), ("switch",)),
    ("plug", None): (("플러그", "콘센트"), ("plug", "outlet")),
    ("air_conditioner", None): (("에어컨",), ("AC", "air conditioner", "aircon")),
    ("thermostat", None): (("보일러", "난방"), ("thermostat", "heating", "boiler")),
    ("air_purifier", None): (("공기청정기", "청정기"), ("air purifier", "purifier")),
    ("fan", None): (("선풍기", "서큘레이터"), ("fan",)),
    ("washer", None): (("세탁기",), ("washer", "washing machine")),
    ("dryer", None): (("건조기",), ("dryer",)),
    ("refrigerator", None): (("냉장고",), ("fridge", "refrigerator")),
    ("dishwasher", None): (("식기세척기", "식세기"), ("dishwasher",)),
    ("robot_vacuum", None): (("로봇청소기", "청소기"), ("robot vacuum", "vacuum")),
    ("tv", None): (("티비", "TV", "텔레비전"), ("TV", "television")),
    ("speaker", None): (("스피커",), ("speaker",)),
    ("speaker", "soundbar"): (("사운드바",), ("soundbar",)),
    ("cover", "curtain"): (("커튼", "전동커튼"), ("curtains", "curtain")),
    ("cover", "blind"): (("블라인드", "롤스크린"), ("blinds", "blind")),
    ("cover", "shade"): (("쉐이드",), ("shades",)),
    ("cover", "garage_door"): (("차고문",), ("garage door",)),
    ("cover", "window"): (("창문",), ("window",)),
    ("lock", None): (("도어락", "도어록", "스마트락"), ("door lock", "lock", "smart lock")),
    ("sensor", "temperature"): (("온도계", "온도센서"), ("thermometer", "temperature sensor")),
    ("sensor", "humidity"): (("습도계",), ("humidity sensor", "hygrometer")),
    ("sensor", "climate"): (("온습도계",), ("climate sensor",)),
    ("sensor", "contact"): (("문열림센서",), ("door sensor", "contact sensor")),
    ("sensor", "motion"): (("동작감지기", "모션센서"), ("motion sensor",)),
    ("sensor", "leak"): (("누수감지기", "누수센서"), ("leak sensor", "water sensor")),
    ("sensor", "smoke"): (("화재감지기", "연기감지기"), ("smoke detector", "smoke alarm")),
    ("xr_headset", None): (("VR 헤드셋", "헤드셋"), ("VR headset", "headset")),
}

# Names that are not area + kind: form factors and nicknames (Korean, English).
NICKNAMES: dict[tuple[str, str | None], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("light", None): (("무드등", "스탠드", "천장등", "메인 조명", "간접등", "수면등", "식탁등", "거울 조명", "펜던트"),
                      ("mood light", "floor lamp", "ceiling light", "main light", "desk lamp", "night light",
                       "reading lamp", "pendant")),
    ("air_conditioner", None): (("스탠드 에어컨", "벽걸이 에어컨", "시스템 에어컨"), ("standing AC", "wall AC")),
    ("plug", None): (("가습기", "전기장판", "커피머신", "전기포트", "충전기", "어항"),
                     ("humidifier", "heating pad", "coffee machine", "kettle", "charger", "fish tank")),
    ("switch", None): (("환풍기", "후드", "보일러 스위치", "현관 센서등"), ("exhaust fan", "range hood", "porch light")),
    ("fan", None): (("탁상 선풍기", "타워팬"), ("desk fan", "tower fan")),
    ("tv", None): (("큰 티비", "안방 티비"), ("big TV",)),
    ("speaker", None): (("블루투스 스피커", "AI 스피커"), ("bluetooth speaker", "smart speaker")),
    ("lock", None): (("현관문", "뒷문", "중문"), ("front door", "back door")),
    ("cover", "curtain"): (("암막 커튼", "거실 커튼"), ("blackout curtains",)),
    ("scene", None): (("잘자요 모드", "취침 모드", "외출 모드", "귀가 모드", "영화 모드", "기상 모드", "파티 모드"),
                      ("good night", "away mode", "movie mode", "welcome home", "wake up", "party mode", "bedtime",
                       "morning", "reading mode", "dinner time")),
}

# Which types a room tends to have, and how many of each (at most).
WEIGHTS: dict[tuple[str, str | None], float] = {
    ("light", None): 6.0, ("air_conditioner", None): 2.0, ("tv", None): 1.2, ("plug", None): 1.2,
    ("switch", None): 0.8, ("thermostat", None): 1.0, ("air_purifier", None): 1.0, ("fan", None): 1.0,
    ("speaker", None): 0.8, ("speaker", "soundbar"): 0.3, ("cover", "curtain"): 1.2, ("cover", "blind"): 1.0,
    ("cover", "shade"): 0.2, ("cover", "window"): 0.4, ("cover", "garage_door"): 0.2, ("lock", None): 0.4,
    ("sensor", "temperature"): 0.6, ("sensor", "humidity"): 0.3, ("sensor", "climate"): 0.5,
    ("sensor", "contact"): 0.3, ("sensor", "motion"): 0.4, ("sensor", "leak"): 0.3, ("sensor", "smoke"): 0.3,
    ("washer", None): 0.3, ("dryer", None): 0.3, ("refrigerator", None): 0.3, ("dishwasher", None): 0.3,
    ("robot_vacuum", None): 0.3, ("xr_headset", None): 0.2,
}


@dataclass(frozen=True)
class Names:
    """A device's names by language, the first of each being what the generator says most."""

    ko: tuple[str, ...]
    en: tuple[str, ...]


def random_home(rng: random.Random, index: int) -> HomeSpec:
    """A home of 3–9 areas and 8–40 devices; every name in it resolves to exactly one thing."""
    chosen = rng.sample(AREAS, rng.randint(3, 9))
    areas, devices, used = [], [], set()
    for area_id, ko, en in chosen:
        names = [ko[0], *[n for n in ko[1:] if rng.random() < 0.5], en[0], *[n for n in en[1:] if rng.random() < 0.3]]
        areas.append(AreaSpec(area_id, tuple(names)))
        used.update(n.replace(" ", "").lower() for n in names)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    for area_id, ko, en in chosen:
        for _ in range(rng.randint(1, 6)):
            kind = rng.choices(kinds, weights)[0]
            names = _device_names(rng, kind, ko[0], en[0])
            names = tuple(n for n in names if n.replace(" ", "").lower() not in used)
            if not names:
                continue
            used.update(n.replace(" ", "").lower() for n in names)
            devices.append(DeviceSpec(f"{kind[0]}.{area_id}_{len(devices)}", kind[0], names, area_id, kind[1]))
    ko_scenes, en_scenes = NICKNAMES[("scene", None)]
    for _ in range(rng.randint(0, 3)):
        names = [rng.choice(ko_scenes) if rng.random() < 0.8 else novel_name(rng, "ko") + " 모드",
                 rng.choice(en_scenes) if rng.random() < 0.8 else novel_name(rng, "en") + " mode"]
        names = [n for n in names if n.replace(" ", "").lower() not in used]
        if names:
            devices.append(DeviceSpec(f"scene.s{len(devices)}", "scene", tuple(names)))
            used.update(n.replace(" ", "").lower() for n in names)
    return HomeSpec(f"gen{index}", rng.choice(["ko", "en"]), tuple(areas), tuple(devices))


# Syllables and letters for names no table holds ("퀘스트", "Roborock"): a home's own names are
# often brands and pet names, and the model must copy a name it has never seen, not map it to one
# it knows.
_SYLLABLES = ("가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보소오조초코토포호구누두루무부수우"
              "주추쿠투푸후그느드르므브스으즈츠크트프흐기니디리미비시이지치키티피히개내대래매배새애재채캐태패해"
              "게네데레메베세에제체케테페헤요유여야열린온산별빛솔샘들꽃봄달해숲돌강물빛")
_CONSONANTS, _VOWELS = "bcdfghklmnprstvz", "aeiou"


def novel_name(rng: random.Random, lang: str) -> str:
    """A made-up name: 2–4 Hangul syllables, or a brand-like word, sometimes with a number."""
    if lang == "ko":
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
    else:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))
        word = word.capitalize() if rng.random() < 0.5 else word
    if rng.random() < 0.15:
        word += f" {rng.randint(1, 9)}"
    return word


def _device_names(rng: random.Random, kind: tuple[str, str | None], area_ko: str, area_en: str) -> list[str]:
    words_ko, words_en = KINDS[kind]
    nick_ko, nick_en = NICKNAMES.get(kind, ((), ()))
    names = []
    r = rng.random()
    if nick_ko and r < 0.3:  # a nickname, alone or after the area ("무드등", "거실 무드등")
        nick = rng.choice(nick_ko)
        names.append(nick if rng.random() < 0.5 else f"{area_ko} {nick}")
    elif r < 0.45:  # a name of its own ("퀘스트", "거실 다이소 스탠드")
        novel = novel_name(rng, "ko")
        names.append(rng.choice([novel, f"{area_ko} {novel}", f"{novel} {rng.choice(words_ko)}"]))
    else:
        names.append(f"{area_ko} {rng.choice(words_ko)}")
    if rng.random() < 0.5:
        names.append(f"{area_ko} {rng.choice(words_ko)}")
    r = rng.random()
    if nick_en and r < 0.25:
        nick = rng.choice(nick_en)
        names.append(nick if rng.random() < 0.5 else f"{area_en} {nick}")
    elif r < 0.4:
        novel = novel_name(rng, "en")
        names.append(rng.choice([novel, f"{area_en} {novel}", f"{novel} {rng.choice(words_en)}"]))
    else:
        names.append(f"{area_en} {rng.choice(words_en)}")
    return list(dict.fromkeys(names))


def names_of(device: DeviceSpec) -> Names:
    from ondol.home.korean import has_hangul

    ko = tuple(n for n in device.names if has_hangul(n)) or device.names
    en = tuple(n for n in device.names if not has_hangul(n)) or device.names
    return Names(ko, en)


__all__ = ["AREAS", "KINDS", "NICKNAMES", "Names", "names_of", "random_home"]
