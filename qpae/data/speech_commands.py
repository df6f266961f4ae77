"""Speech Commands (v0.01/v0.02): ``<word>/<speakerhash>_nohash_<n>.wav`` (16 kHz, 1 s)."""

from __future__ import annotations

from qpae.data.base import AudioDataModule, Recording


class SpeechCommandsDataModule(AudioDataModule):
    """Speech Commands, labelled by ``speaker`` (keep the ``max_classes`` speakers with most
    clips; the paper kept 100) or ``word``. ``_background_noise_`` is never a class."""

    name = "speech_commands"
    layout = "  <data_dir>/<word>/<speakerhash>_nohash_<n>.wav   (e.g. yes/0a7c2a8d_nohash_0.wav)"
    download_url = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"

    def __init__(self, *args, label: str = "speaker", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if label not in ("speaker", "word"):
            raise ValueError(f"speech_commands label must be 'speaker' or 'word', got {label!r}")
        self.label = label

    def find_recordings(self) -> list[Recording]:
        recs = []
        for path in sorted(self.data_dir.glob("*/*_nohash_*.wav")):
            word = path.parent.name
            if word.startswith("_"):
                continue
            speaker = path.stem.split("_nohash_")[0]
            recs.append(Recording(path, speaker if self.label == "speaker" else word, speaker))
        return recs
