// The dashboard's words in Korean and English, and each device type's state said humanly.
// Kept apart from app.js (behaviour) so a new device type or value is one place to edit.
"use strict";

const HANGUL = /[\u1100-\u11FF\u3130-\u318F\uAC00-\uD7A3]/;

// A home file lists a device's names in both languages mixed: the first with Hangul is the Korean
// one, the first without is the English one; a device named in one language only keeps that name.
function pickName(names, lang, fallback) {
  if (!names || !names.length) return fallback;
  const found = names.find((n) => (lang === "ko") === HANGUL.test(n));
  return found || names[0];
}

const UI = {
  ko: {
    title: "우리 집", assistant: "무엇을 도와드릴까요?", send: "보내기", log: "최근 기록",
    placeholder: "예: 거실 에어컨 24도로 맞춰줘", other: "집 전체",
    live: "실시간 연결됨", connecting: "연결 중…", offline: "연결 끊김 — 다시 연결하는 중",
    loading: "어시스턴트가 모델을 불러오는 중입니다…", ready: "Enter로 보내기 · 한국어와 영어 모두 알아들어요",
    none: "이 서버에는 어시스턴트가 없습니다. 카드의 버튼으로 기기를 조작하세요.", failed: "어시스턴트를 불러오지 못했습니다: ",
    thinking: "생각하는 중…", error: "오류: ", empty: "아직 기록이 없습니다.", ok: "완료", refused: "거절",
    devices: (n) => `기기 ${n}대`, signIn: "로그인이 필요합니다", dryRun: "(미리보기)",
  },
  en: {
    title: "Home", assistant: "What can I do for you?", send: "Send", log: "Recent activity",
    placeholder: "e.g. turn off the bedroom light", other: "Whole home",
    live: "Live", connecting: "Connecting…", offline: "Disconnected — reconnecting",
    loading: "The assistant is loading its model…", ready: "Press Enter to send · Korean or English",
    none: "This server has no assistant; use the buttons on the cards.", failed: "The assistant failed to load: ",
    thinking: "Thinking…", error: "Error: ", empty: "Nothing yet.", ok: "done", refused: "refused",
    devices: (n) => `${n} device${n === 1 ? "" : "s"}`, signIn: "Sign-in needed", dryRun: "(preview)",
  },
};

const TYPES = {
  ko: {
    light: "조명", switch: "스위치", plug: "플러그", air_conditioner: "에어컨", thermostat: "난방",
    air_purifier: "공기청정기", fan: "선풍기", washer: "세탁기", dryer: "건조기", refrigerator: "냉장고",
    dishwasher: "식기세척기", robot_vacuum: "로봇청소기", tv: "TV", speaker: "스피커", cover: "커버", lock: "도어락",
    sensor: "센서", scene: "장면", xr_headset: "XR 헤드셋",
    curtain: "커튼", blind: "블라인드", shade: "가림막", shutter: "셔터", garage_door: "차고 문", window: "창문",
    awning: "차양",
  },
  en: {
    light: "Light", switch: "Switch", plug: "Plug", air_conditioner: "Air conditioner", thermostat: "Heating",
    air_purifier: "Air purifier", fan: "Fan", washer: "Washer", dryer: "Dryer", refrigerator: "Fridge",
    dishwasher: "Dishwasher", robot_vacuum: "Robot vacuum", tv: "TV", speaker: "Speaker", cover: "Cover",
    lock: "Lock", sensor: "Sensor", scene: "Scene", xr_headset: "XR headset",
    curtain: "Curtain", blind: "Blind", shade: "Shade", shutter: "Shutter", garage_door: "Garage door",
    window: "Window", awning: "Awning",
  },
};

// Attribute values (modes, cycles, states, inputs) in words; a value not listed is shown as is.
const VALUES = {
  ko: {
    on: "켜짐", off: "꺼짐", locked: "잠김", unlocked: "열림", open: "열림", closed: "닫힘",
    stopped: "정지", running: "작동 중", paused: "일시정지", error: "오류", returning: "복귀 중", docked: "충전대",
    cool: "냉방", heat: "난방", dry: "제습", fan: "송풍", auto: "자동", air_clean: "공기청정", eco: "절약",
    away: "외출", manual: "수동", sleep: "취침", turbo: "터보", normal: "표준", natural: "자연풍", quiet: "조용히",
    mop: "물걸레", rapid_cool: "급속 냉장", rapid_freeze: "급속 냉동", vacation: "휴가",
    low: "약", medium: "중", high: "강", quick: "쾌속", wool: "울", delicate: "섬세", heavy: "강력",
    bedding: "이불", baby_care: "아기옷", rinse_spin: "헹굼+탈수", spin: "탈수",
    good: "좋음", moderate: "보통", bad: "나쁨", very_bad: "매우 나쁨",
    playing: "재생 중", color: "색상", color_temperature: "색온도",
  },
  en: {
    on: "On", off: "Off", locked: "Locked", unlocked: "Unlocked", open: "Open", closed: "Closed",
    stopped: "Stopped", running: "Running", paused: "Paused", error: "Error", returning: "Returning",
    docked: "Docked", cool: "Cool", heat: "Heat", dry: "Dry", fan: "Fan", auto: "Auto", air_clean: "Air clean",
    eco: "Eco", away: "Away", manual: "Manual", sleep: "Sleep", turbo: "Turbo", normal: "Normal",
    natural: "Natural", quiet: "Quiet", mop: "Mop", rapid_cool: "Rapid cool", rapid_freeze: "Rapid freeze",
    vacation: "Vacation", low: "Low", medium: "Medium", high: "High", quick: "Quick", wool: "Wool",
    delicate: "Delicate", heavy: "Heavy", bedding: "Bedding", baby_care: "Baby care", rinse_spin: "Rinse + spin",
    spin: "Spin", good: "Good", moderate: "Moderate", bad: "Poor", very_bad: "Very poor",
    playing: "Playing", color: "Colour", color_temperature: "White",
  },
};

// Words around numbers, per language.
const WORDS = {
  ko: {
    target: (t) => `${t} 설정`, now: (t) => `현재 ${t}`, brightness: (b) => `밝기 ${b}%`, volume: (v) => `볼륨 ${v}`,
    muted: "음소거", channel: (c) => `채널 ${c}`, speed: (s) => `바람 ${s}`, step: (s) => `${s}단`,
    left: (m) => `${m}분 남음`, battery: (b) => `배터리 ${b}%`, position: (p) => `${p}% 열림`,
    fridge: (t) => `냉장 ${t}`, freezer: (t) => `냉동 ${t}`, humidity: (h) => `습도 ${h}%`, air: (q) => `공기 ${q}`,
    motion: "움직임 감지", still: "움직임 없음", leak: "누수 감지!", smoke: "연기 감지!", co: "일산화탄소 감지!",
    door: (c) => `문 ${c}`, input: (i) => `입력 ${i}`, track: (t) => `${t}번 곡`,
    // the card buttons, named by what they do
    turn_on: "켜기", turn_off: "끄기", lock: "잠그기", unlock: "열기", open: "열기", close: "닫기", activate: "실행",
  },
  en: {
    target: (t) => `set to ${t}`, now: (t) => `now ${t}`, brightness: (b) => `${b}% bright`, volume: (v) => `volume ${v}`,
    muted: "muted", channel: (c) => `channel ${c}`, speed: (s) => `fan ${s}`, step: (s) => `speed ${s}`,
    left: (m) => `${m} min left`, battery: (b) => `battery ${b}%`, position: (p) => `${p}% open`,
    fridge: (t) => `fridge ${t}`, freezer: (t) => `freezer ${t}`, humidity: (h) => `humidity ${h}%`,
    air: (q) => `air ${q}`, motion: "motion", still: "no motion", leak: "leak!", smoke: "smoke!",
    co: "CO detected!", door: (c) => `door ${c}`, input: (i) => `input ${i}`, track: (t) => `track ${t}`,
    turn_on: "Turn on", turn_off: "Turn off", lock: "Lock", unlock: "Unlock", open: "Open", close: "Close",
    activate: "Run",
  },
};

const num = (x) => (Number.isInteger(x) ? String(x) : (Math.round(x * 10) / 10).toString()).replace("-", "−");
const celsius = (x) => `${num(x)} °C`;

// How a device's state reads: {main, details[], active (lit up), alert (needs attention)}.
function describeState(device, lang) {
  const s = device.state || {};
  const v = (x) => VALUES[lang][x] ?? String(x).toUpperCase().replace("_", " ");
  const w = WORDS[lang];
  const on = s.power === "on";
  const power = v(s.power ?? "off");
  switch (device.type) {
    case "light":
      return { main: on ? `${power} · ${w.brightness(s.brightness)}` : power, active: on,
               details: on && s.color_mode === "color" ? [s.color] : [], swatch: on ? lightColour(s) : null };
    case "switch": case "plug":
      return { main: power, active: on, details: [] };
    case "air_conditioner": case "thermostat":
      return { main: on ? `${power} · ${celsius(s.target_temperature)}` : power, active: on,
               details: [on ? v(s.mode) : w.target(celsius(s.target_temperature)), w.now(celsius(s.current_temperature)),
                         ...(s.fan_speed && on ? [w.speed(v(s.fan_speed))] : [])] };
    case "air_purifier":
      return { main: on ? `${power} · ${v(s.mode)}` : power, active: on,
               details: [w.air(v(s.air_quality)), `PM2.5 ${s.pm25}`], alert: /bad/.test(s.air_quality) };
    case "fan":
      return { main: on ? `${power} · ${w.step(s.fan_speed)}` : power, active: on, details: on ? [v(s.mode)] : [] };
    case "washer": case "dryer": case "dishwasher": {
      const busy = s.operational_state !== "stopped";
      return { main: busy ? v(s.operational_state) : power, active: busy || on, alert: s.operational_state === "error",
               details: [v(s.cycle), ...(busy && s.remaining_minutes ? [w.left(s.remaining_minutes)] : [])] };
    }
    case "refrigerator":
      return { main: `${w.fridge(celsius(s.fridge_temperature))} · ${w.freezer(celsius(s.freezer_temperature))}`,
               active: false, details: s.mode && s.mode !== "normal" ? [v(s.mode)] : [] };
    case "robot_vacuum":
      return { main: v(s.operational_state), active: ["running", "returning"].includes(s.operational_state),
               alert: s.operational_state === "error", details: [v(s.mode), w.battery(s.battery)] };
    case "tv": case "speaker": case "xr_headset": {
      const details = [];
      if (s.channel !== undefined) details.push(w.channel(s.channel));
      details.push(s.muted ? w.muted : w.volume(s.volume));
      if (s.playback && s.playback !== "stopped") details.push(`${v(s.playback)} · ${w.track(s.track)}`);
      if (s.input && s.input !== "tv" && s.input !== "wifi") details.push(w.input(s.input.toUpperCase()));
      if (s.battery !== undefined) details.push(w.battery(s.battery));
      return { main: power, active: on, details: on ? details : s.battery !== undefined ? [w.battery(s.battery)] : [] };
    }
    case "cover": {
      const p = s.position;
      return { main: p === 0 ? v("closed") : p === 100 ? v("open") : w.position(p), active: p > 0, details: [] };
    }
    case "lock":
      return { main: v(s.lock_state), active: s.lock_state === "unlocked", alert: s.lock_state === "unlocked",
               details: [w.battery(s.battery)] };
    case "sensor": return describeSensor(device, s, lang);
    case "scene": return { main: "", active: false, details: [] };
    default:
      return { main: Object.entries(s).map(([k, x]) => `${k} ${x}`).join(" · "), active: on, details: [] };
  }
}

// A sensor shows only what it measures: its device_class when it has one, else every reading;
// alarms (leak, smoke, CO) come first because they are the reason to look.
function describeSensor(device, s, lang) {
  const w = WORDS[lang];
  const alarms = ["leak", "smoke", "co"].filter((k) => s[k] === true).map((k) => w[k]);
  const readings = [];
  if (s.temperature !== undefined) readings.push(celsius(s.temperature));
  if (s.humidity !== undefined) readings.push(w.humidity(s.humidity));
  const details = [];
  if (s.contact !== undefined) details.push(w.door(VALUES[lang][s.contact]));
  if (s.motion !== undefined) details.push(s.motion ? w.motion : w.still);
  if (s.battery !== undefined) details.push(w.battery(s.battery));
  return { main: alarms.length ? alarms.join(" · ") : readings.join(" · "), details, alert: alarms.length > 0,
           active: s.motion === true || s.contact === "open" };
}

// The light's colour for the card's swatch: its RGB colour, or white of its colour temperature.
function lightColour(s) {
  if (s.color_mode === "color") return s.color;
  const k = s.color_temperature || 4000;  // 2200 K is candle-warm, 6500 K daylight
  const t = Math.min(1, Math.max(0, (k - 2200) / 4300));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 235)}, ${mix(180, 242)}, ${mix(100, 255)})`;
}
