"""AudioMNIST: ``data/<NN>/<digit>_<NN>_<rep>.wav`` (48 kHz) and ``audioMNIST_meta.txt``."""

from __future__ import annotations

import json

from qpae.data.base import AudioDataModule, Recording

LABELS = ("speaker", "digit", "accent", "gender")


class AudioMNISTDataModule(AudioDataModule):
    """AudioMNIST, labelled by ``speaker`` (60, default), ``digit``, or ``accent``/``gender`` (meta)."""

    name = "audiomnist"
    layout = (
        "  <data_dir>/data/<NN>/<digit>_<NN>_<rep>.wav   (e.g. data/01/0_01_0.wav)\n"
        "  <data_dir>/data/audioMNIST_meta.txt             (speaker metadata, for accent/gender labels)"
    )
    download_url = "https://github.com/soerenab/AudioMNIST/archive/refs/heads/master.zip"

    def __init__(self, *args, label: str = "speaker", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if label not in LABELS:
            raise ValueError(f"audiomnist label must be one of {LABELS}, got {label!r}")
        self.label = label

    def _root(self):
        for root in (self.data_dir / "data", *sorted(self.data_dir.glob("*/data"))):
            if root.is_dir():
                return root
        raise self.not_found()

    def find_recordings(self) -> list[Recording]:
        root = self._root()
        meta = {}
        if self.label in ("accent", "gender"):
            meta_path = root / "audioMNIST_meta.txt"
            if not meta_path.exists():
                raise self.not_found(f"Labels '{self.label}' need {meta_path}.")
            meta = json.loads(meta_path.read_text())
        recs = []
        for path in sorted(root.glob("[0-9][0-9]/*.wav")):
            parts = path.stem.split("_")
            if len(parts) != 3:
                continue
            digit, speaker, _ = parts
            if self.label == "speaker":
                label = speaker
            elif self.label == "digit":
                label = digit
            else:
                if speaker not in meta:
                    raise ValueError(f"speaker {speaker} missing from audioMNIST_meta.txt")
                # the meta file mixes 'german' and 'German'
                label = str(meta[speaker][self.label]).strip().lower()
            recs.append(Recording(path, label, speaker))
        return recs
