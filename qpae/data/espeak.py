"""Offline speech synthesis with espeak-ng, called through ctypes.

The shared library and its voice data come from the ``espeakng-loader`` wheel, so no system
package and no network access are needed.

Determinism. espeak-ng keeps state between utterances that is not reset by any public call: a
``static`` pitch-flutter phase inside the wave generator keeps advancing, and libc ``rand()``
drives some noise sources. The same call therefore gives slightly different samples depending on
what was synthesised before. To make output a pure function of the arguments we load a *private
copy* of the library and unload/reload it (``dlclose`` + ``dlopen``), which re-zeroes all of its
static state. That costs a few milliseconds (mostly re-reading the voice and dictionary), so:

* :func:`synthesize` resets before every call: same arguments -> identical samples, always.
* :func:`synthesize_many` resets once, then renders a whole list: the output depends on the whole
  list (same list -> identical samples), at roughly 4x the speed. Corpus builders use this.
"""

from __future__ import annotations

import _ctypes  # dlclose/FreeLibrary, which the public ctypes module does not expose
import ctypes
import hashlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

__all__ = [
    "RATE_RANGE",
    "SynthRequest",
    "available_variants",
    "available_voices",
    "sample_rate",
    "synthesize",
    "synthesize_many",
    "text_to_phonemes",
]

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth blocks and feeds the callback; no audio device
_INITIALIZE_DONT_EXIT = 0x8000  # otherwise espeak-ng calls exit() when its data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_PHONEMES_IPA = 0x02

RATE_RANGE = (80, 450)  # words per minute that espeak-ng accepts (it clamps outside)
_PERCENT_RANGE = (0, 100)  # pitch and pitch range are 0-100 in espeak-ng

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
    """``espeak_VOICE`` as returned by ``espeak_ListVoices``."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        # Sequence of (priority byte, NUL-terminated language) pairs ending with a 0 byte, so it
        # is read as raw bytes rather than as a C string.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class SynthRequest:
    """One utterance for :func:`synthesize_many`; fields mean the same as in :func:`synthesize`."""

    text: str
    voice: str = "en"
    pitch: int = 50
    rate: int = 175
    pitch_range: int = 50


def _private_library_copy() -> str:
    """Path of a copy of the wheel's libespeak-ng that nothing else in this process loads.

    The copy lives in a per-user cache keyed by the library's hash, so processes share it and
    nothing has to be cleaned up (pool workers are often killed without running atexit hooks).
    Statics are per process, so sharing the file between processes is harmless.
    """
    src = Path(espeakng_loader.get_library_path())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qpae" / "espeak"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: fall back to the temp dir
        cache = Path(tempfile.gettempdir()) / f"qpae-espeak-{uid}"
        cache.mkdir(parents=True, exist_ok=True)
    dst = cache / f"libespeak-ng-{digest}{src.suffix}"
    if not dst.is_file():
        # Copy then rename, so a concurrent process never dlopens a half-written file.
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".part")
        os.close(fd)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return str(dst)


class _Engine:
    """A private instance of libespeak-ng that can be reset by reloading it.

    Not thread-safe by itself: every use goes through ``_LOCK``.
    """

    def __init__(self) -> None:
        # A private copy guarantees that dlclose really unloads the library (and so resets its
        # static state) even if another package in this process has loaded the wheel's copy.
        self._lib_path = _private_library_copy()
        self._data_path = espeakng_loader.get_data_path().encode()
        self._chunks: list[np.ndarray] = []
        # Kept as an attribute: ctypes does not keep callbacks alive, and a collected callback
        # would crash the process on the next synthesis.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._libc = ctypes.CDLL(None) if sys.platform != "win32" else None
        self.lib: ctypes.CDLL | None = None
        self.sample_rate = 0
        self._load()

    def _on_audio(self, wav, n: int, _events) -> int:  # wav: short*, _events: espeak_EVENT*
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = keep synthesising

    def _load(self) -> None:
        lib = ctypes.CDLL(self._lib_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
        ]  # fmt: skip
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {sample_rate})")
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.sample_rate = lib, sample_rate

    def reset(self) -> None:
        """Unload and reload the library so that no state survives from earlier utterances."""
        assert self.lib is not None
        self.lib.espeak_Terminate()
        handle = self.lib._handle
        self.lib = None
        # Unloading drops every static variable; the next _load starts from a pristine library.
        if sys.platform == "win32":
            _ctypes.FreeLibrary(handle)
        else:
            _ctypes.dlclose(handle)
        self._load()

    def set_voice(self, voice: str) -> None:
        assert self.lib is not None
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng could not select voice {voice!r}")

    def render(self, req: SynthRequest) -> np.ndarray:
        assert self.lib is not None
        self.set_voice(req.voice)
        # Parameters after the voice: selecting a voice may reset them.
        for param, value in (
            (_PARAM_RATE, req.rate),
            (_PARAM_PITCH, req.pitch),
            (_PARAM_RANGE, req.pitch_range),
        ):
            if self.lib.espeak_SetParameter(param, value, 0) != 0:
                raise RuntimeError(f"espeak_SetParameter({param}, {value}) failed")
        # Fixed seeds for espeak's own PRNG and libc rand() (used for breath/aspiration noise).
        # Reseeding libc rand() is process-wide; nothing else here depends on it.
        self.lib.espeak_ng_SetRandSeed(0)
        if self._libc is not None:
            self._libc.srand(0)
        self._chunks = []
        text = req.text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err}")
        self.lib.espeak_Synchronize()  # no-op in synchronous mode, kept for clarity/safety
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks = []
        return pcm.astype(np.float32) / 32768.0

    def list_voices(self, variants: bool) -> list[_Voice]:
        assert self.lib is not None
        spec = None
        if variants:
            # Voices whose language is "variant" are the "+name" modifiers in voices/!v.
            spec_voice = _Voice()
            spec_voice.languages = ctypes.cast(ctypes.c_char_p(b"variant"), ctypes.c_void_p)
            spec = ctypes.byref(spec_voice)
        arr = self.lib.espeak_ListVoices(spec)
        out = []
        i = 0
        while arr[i]:
            out.append(arr[i].contents)
            i += 1
        return out


_LOCK = threading.Lock()  # espeak-ng has process-global state: one caller at a time
_ENGINE: _Engine | None = None
_VOICES: tuple[list[str], list[str], dict[str, str]] | None = None


def _reinit_after_fork() -> None:
    # A child forked while another thread held the lock would otherwise deadlock forever.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def _engine() -> _Engine:
    """The process-wide engine, created on first use (call with ``_LOCK`` held)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def _voice_lists() -> tuple[list[str], list[str], dict[str, str]]:
    """(voices, variants, lower-cased voice -> voice) from the shipped data, cached.

    Call with ``_LOCK`` held.
    """
    global _VOICES
    if _VOICES is None:
        eng = _engine()
        # The identifier is the voice file's path below espeak-ng-data/lang ("gmw/en-US"); its
        # last component is what espeak_SetVoiceByName accepts (language codes such as "fr-fr"
        # are *not* all accepted, so they are not offered).
        voices = sorted({v.identifier.decode().rsplit("/", 1)[-1] for v in eng.list_voices(False)})
        variants = sorted({v.identifier.decode().rsplit("/", 1)[-1] for v in eng.list_voices(True)})
        _VOICES = (voices, variants, {v.lower(): v for v in voices})
    return _VOICES


def available_voices() -> list[str]:
    """Voice identifiers offered by the shipped espeak-ng data, e.g. ``"en"``, ``"en-US"``, ``"fr"``.

    A voice may carry a variant suffix, ``"<voice>+<variant>"`` (``"en-US+f2"``); see
    :func:`available_variants`. Matching of the voice part is case-insensitive.
    """
    with _LOCK:
        return list(_voice_lists()[0])


def available_variants() -> list[str]:
    """Variant names (``"m1"``, ``"f2"``, ``"klatt"``, ...) usable as ``"<voice>+<variant>"``.

    Variant names are case-sensitive (they are file names in the voice data).
    """
    with _LOCK:
        return list(_voice_lists()[1])


def sample_rate() -> int:
    """Sample rate of the engine's output in Hz (22050 for espeak-ng)."""
    with _LOCK:
        return _engine().sample_rate


def _validate(req: SynthRequest) -> SynthRequest:
    """Check a request and return it with the voice spelled as the data spells it.

    espeak_SetVoiceByName silently falls back to a default for unknown variants and for some
    unknown names, so validation cannot be left to the library.
    """
    if not req.text.strip():
        raise ValueError("text is empty")
    for name, value, (lo, hi) in (
        ("rate", req.rate, RATE_RANGE),
        ("pitch", req.pitch, _PERCENT_RANGE),
        ("pitch_range", req.pitch_range, _PERCENT_RANGE),
    ):
        if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    voices, variants, by_lower = _voice_lists()
    base, sep, variant = req.voice.partition("+")
    if base.lower() not in by_lower:
        raise ValueError(
            f"unknown espeak-ng voice {base!r}; valid voices: {', '.join(voices)}"
            f" (optionally followed by '+<variant>')"
        )
    if sep and variant not in variants:
        raise ValueError(f"unknown espeak-ng variant {variant!r}; valid variants: {', '.join(variants)}")
    voice = by_lower[base.lower()] + (f"+{variant}" if sep else "")
    return SynthRequest(req.text, voice, int(req.pitch), int(req.rate), int(req.pitch_range))


def synthesize(
    text: str, voice: str = "en", pitch: int = 50, rate: int = 175, pitch_range: int = 50
) -> tuple[np.ndarray, int]:
    """Synthesise ``text`` and return ``(waveform, sample_rate)``.

    Args:
        text: UTF-8 text to speak (read as plain text, not SSML).
        voice: an entry of :func:`available_voices`, optionally ``"+<variant>"``
            (``"en-US+f2"``). Unknown voices or variants raise ``ValueError`` listing valid ones.
        pitch: base pitch, 0-100 (50 is the voice's default).
        rate: speaking rate in words per minute, 80-450.
        pitch_range: intonation range, 0-100 (0 is monotone).

    Returns:
        A float32 mono waveform in [-1, 1] and the sample rate (22050 Hz).

    The output depends only on the arguments (the engine is reset before every call, see the
    module docstring), at a cost of a few ms per call; use :func:`synthesize_many` for bulk work.
    """
    waves, sr = synthesize_many([SynthRequest(text, voice, pitch, rate, pitch_range)])
    return waves[0], sr


def synthesize_many(requests: Iterable[SynthRequest]) -> tuple[list[np.ndarray], int]:
    """Synthesise several utterances in order after a single engine reset.

    Returns one float32 waveform per request and the sample rate. The result is deterministic
    for a given *sequence* of requests, but an utterance can differ by a few samples from what
    :func:`synthesize` gives for it alone, because engine state carries over within the batch.
    All requests are validated before any is synthesised.
    """
    with _LOCK:
        eng = _engine()
        reqs = [_validate(r) for r in requests]
        eng.reset()
        waves = [eng.render(r) for r in reqs]
        return waves, eng.sample_rate


def text_to_phonemes(text: str, voice: str = "en") -> str:
    """IPA transcription of ``text`` as ``voice`` would pronounce it.

    Useful to check what a voice really does with foreign text: espeak-ng marks stretches it
    hands to another language's rules with ``(en)...(xx)``, e.g. a Russian voice reads Latin
    script as English.
    """
    with _LOCK:
        req = _validate(SynthRequest(text, voice))
        eng = _engine()
        eng.set_voice(req.voice)
        assert eng.lib is not None
        buf = ctypes.c_char_p(req.text.encode("utf-8"))
        ptr = ctypes.pointer(buf)
        parts: list[str] = []
        # Each call consumes one clause and advances the pointer; NULL means the text is done.
        while ptr.contents.value:
            out = eng.lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                parts.append(out.decode("utf-8"))
        return " ".join(parts)
