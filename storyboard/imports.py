"""Shot lists (CSV) and screenplays (Fountain) into a project: read, plan, preview, apply.

Nothing here writes until `apply_plan`. `read` turns an upload into a Source (UTF-8 text, or a
refusal saying why not); `plan` turns a Source into a Plan: the scenes and shots an import would
create, or one error per bad row. The preview shows the Plan; confirming re-reads the same text,
which travelled in the confirm form signed (`seal`/`unseal`), so nobody uploads twice and nobody
can swap other text in. `apply_plan` writes the whole Plan in one transaction, or nothing.

Limits, the same for both kinds: files up to 1 MB (MAX_BYTES), at most 1,000 shots (MAX_SHOTS),
UTF-8 only (with or without a byte order mark: Latin-1 and Windows code pages cannot be told
apart reliably, so accents would be guessed wrong without anyone noticing).

Fountain is parsed with screenplain (pinned in pyproject). Jouvence was tried too and dropped:
it loops forever on text as small as fifty "/*", its file-object entry point is broken, and it
merges consecutive action paragraphs, which are our shots. Screenplain keeps each paragraph and
marks parentheticals; its two comment patterns (/* */ and [[ ]]) go quadratic on markers that
are never closed, so such files are refused before it sees them (`_unclosed_marker`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field

from django.core import signing
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from screenplain.parsers import fountain
from screenplain.types import Action, Dialog, DualDialog, Section, Slug, Transition

from accounts.models import User
from storyboard import catalogue, csvsafe, realtime
from storyboard.models import Project, Scene, Shot

CSV = "csv"
FOUNTAIN = "fountain"
KINDS = {CSV: "Shot list (CSV)", FOUNTAIN: "Screenplay (Fountain)"}

MAX_BYTES = 1_000_000
MAX_SHOTS = 1_000
# A preview confirmed later than this is refused: the board it was checked against has moved on.
SEAL_MAX_AGE = 60 * 60

COLUMNS = ("title", "prompt", "duration", "scene", "notes")
REQUIRED = ("title", "prompt")
TITLE_MAX = Shot._meta.get_field("title").max_length
PROMPT_MAX = Shot._meta.get_field("prompt").max_length
NOTES_MAX = Shot._meta.get_field("notes").max_length
SCENE_MAX = Scene._meta.get_field("title").max_length
LIMITS = {"title": (TITLE_MAX, "a title holds"), "prompt": (PROMPT_MAX, "a prompt holds"),
          "notes": (NOTES_MAX, "notes hold"), "scene": (SCENE_MAX, "a scene name holds")}
# A derived title: short enough to read on a card.
DERIVED_TITLE = 60

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SECONDS = re.compile(r"(\d+)\s*(?:s|sec|secs|second|seconds)?")


class Refused(Exception):
    """A file, or a confirmation, that cannot be imported at all; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Source:
    kind: str
    name: str
    text: str


@dataclass
class PlannedScene:
    title: str
    # The board's scene of the same name (a CSV's scene column), or None: a new scene.
    existing: Scene | None = None
    shots: int = 0


@dataclass
class PlannedShot:
    # Where it came from, as people find it in their file ("Line 4", "Scene 2, action 3").
    where: str
    title: str
    prompt: str
    notes: str = ""
    # "" keeps the project's default duration.
    duration: str = ""
    scene: PlannedScene | None = None
    # `where` with the scene heading, for messages (a screenplay's shots).
    heading: str = ""


@dataclass
class Plan:
    source: Source
    scenes: list[PlannedScene] = field(default_factory=list)
    shots: list[PlannedShot] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Kept going, but the person should know before confirming (dialogue cut to fit).
    warnings: list[str] = field(default_factory=list)
    # What the file had that is not imported: unknown columns, transitions, sections.
    ignored: list[str] = field(default_factory=list)
    default_duration: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.shots)

    @property
    def new_scenes(self) -> list[PlannedScene]:
        return [scene for scene in self.scenes if scene.existing is None]

    def summary(self) -> str:
        """"24 shots in 5 scenes", as the preview and the success message say it."""
        shots = f"{len(self.shots)} shot{'s' if len(self.shots) != 1 else ''}"
        used = [scene for scene in self.scenes if scene.shots]
        if not used:
            return shots
        return f"{shots} in {len(used)} scene{'s' if len(used) != 1 else ''}"

    def fingerprint(self) -> str:
        """What the preview showed: a confirm whose re-read plan differs is not applied."""
        scenes = [(s.title, s.existing.pk if s.existing else None) for s in self.scenes]
        index = {id(s): i for i, s in enumerate(self.scenes)}
        shots = [(index.get(id(s.scene)), s.title, s.prompt, s.notes, s.duration)
                 for s in self.shots]
        data = json.dumps([scenes, shots, self.default_duration], ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()[:32]


# Reading an upload


def read(*, upload: UploadedFile | None, kind: str = "") -> Source:
    """The upload's text, refused unless it is a non-empty UTF-8 text file of at most 1 MB.

    `kind` is CSV or FOUNTAIN; anything else is taken from the name (".csv" is a shot list).
    """
    if upload is None:
        raise Refused("Choose a file to import.")
    name = upload.name or "The file"
    if kind not in KINDS:
        kind = CSV if name.lower().endswith(".csv") else FOUNTAIN
    if upload.size is not None and upload.size > MAX_BYTES:
        raise Refused(f"{name} is {_megabytes(upload.size)}; an import takes files of at most "
                      f"{_megabytes(MAX_BYTES)}. Split it and import the parts one by one.")
    data = upload.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise Refused(f"{name} is larger than {_megabytes(MAX_BYTES)}, the most an import "
                      "takes. Split it and import the parts one by one.")
    return Source(kind=kind, name=name, text=decode(data, name=name))


def decode(data: bytes, *, name: str = "The file") -> str:
    """UTF-8 text with its lines ending in \\n, or Refused saying what the bytes are instead."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Refused(f"{name} is UTF-16 text. Save it as UTF-8 (in Excel: “CSV UTF-8”) "
                      "and import it again.")
    data = data.removeprefix(b"\xef\xbb\xbf")
    if not data.strip():
        raise Refused(f"{name} is empty: there is nothing to import.")
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise Refused(f"Line {line} of {name} has a NUL byte: this is binary data (or UTF-16 "
                      "without its byte order mark), not UTF-8 text.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise Refused(f"Line {line} of {name} is not UTF-8 (byte 0x{data[error.start]:02X}). "
                      "Only UTF-8 is read, so that accents are never guessed wrong: save the "
                      "file as UTF-8 (in Excel: “CSV UTF-8”) and import it again.") from None
    control = CONTROL.search(text)
    if control:
        line = text[:control.start()].count("\n") + 1
        raise Refused(f"Line {line} of {name} has a control character "
                      f"(U+{ord(control.group()):04X}): this looks like binary data, not text.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB".replace(".0 MB", " MB")


# Planning


def plan(*, project: Project, source: Source) -> Plan:
    """What importing `source` into `project` would create, or why it cannot. Reads only."""
    if source.kind == CSV:
        return parse_csv(project=project, source=source)
    return parse_fountain(project=project, source=source)


def parse_csv(*, project: Project, source: Source) -> Plan:
    """A shot list: a header row naming the columns (any order, any case), then a shot a row.

    title and prompt are required columns (a blank title is made from the prompt), duration,
    scene and notes optional; other columns are ignored and listed in the preview. A scene is
    found on the board by its name (case does not matter) or created after the board's scenes.
    """
    result = Plan(source=source, default_duration=project.default_duration)
    text = source.text
    first = text.lstrip("\n").split("\n", 1)[0]
    # Spreadsheets in many locales save with semicolons, and some people export tabs.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    spec = catalogue.ENDPOINTS.get(project.default_endpoint)
    scenes = _SceneNames(project, result)
    columns: dict[str, int] | None = None
    width = 0
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns, width = _header(row, start=start, result=result)
                if columns is None:
                    return result
                continue
            if len(result.shots) + len(result.errors) >= MAX_SHOTS:
                result.errors = [f"{source.name} has more than {MAX_SHOTS:,} shots; an import "
                                 f"takes at most {MAX_SHOTS:,}. Split the file and import the "
                                 "parts one by one."]
                result.shots = []
                return result
            _row(row, start=start, columns=columns, width=width, spec=spec, scenes=scenes,
                 result=result)
    except csv.Error as error:
        result.errors.append(f"Line {line}: this is not a readable CSV row ({error}).")
        return result
    if columns is None:
        result.errors.append(f"{source.name} has no header row: nothing to import.")
    elif not result.shots and not result.errors:
        result.errors.append(f"{source.name} has a header row but no shots under it.")
    return result


def _header(row: list[str], *, start: int,
            result: Plan) -> tuple[dict[str, int] | None, int]:
    """The known columns' positions, or None after noting why the header will not do."""
    names = [cell.strip().casefold() for cell in row]
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in COLUMNS:
            if name in columns:
                result.errors.append(f"Line {start}: the header names the {name} column "
                                     "twice.")
            columns[name] = index
        elif name:
            result.ignored.append(row[index].strip())
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        found = ", ".join(cell.strip() for cell in row if cell.strip()) or "nothing"
        result.errors.append(
            f"The header row has no {' or '.join(missing)} column. A shot list needs title "
            f"and prompt columns (duration, scene and notes are optional); this one has: "
            f"{found}.")
    if result.errors:
        return None, 0
    return columns, len(row)


class _SceneNames:
    """Scenes by name, case-insensitively: the board's own first, then those the file adds."""

    def __init__(self, project: Project, result: Plan) -> None:
        self.result = result
        self.by_name: dict[str, PlannedScene] = {}
        self.board: dict[str, Scene] = {}
        for scene in project.scenes.order_by("position", "pk"):
            self.board.setdefault(scene.title.strip().casefold(), scene)

    def get(self, title: str) -> PlannedScene:
        key = title.casefold()
        planned = self.by_name.get(key)
        if planned is None:
            planned = PlannedScene(title=title, existing=self.board.get(key))
            self.by_name[key] = planned
            self.result.scenes.append(planned)
        return planned


def _row(row: list[str], *, start: int, columns: dict[str, int], width: int,
         spec: catalogue.Endpoint | None, scenes: _SceneNames, result: Plan) -> None:
    """Plan one shot from one row, or note one error for the row naming each bad column."""
    problems: list[str] = []
    if len(row) > width and any(cell.strip() for cell in row[width:]):
        result.errors.append(
            f"Line {start}: {len(row)} cells, but the header names {width} columns. A cell "
            "with a comma in it needs double quotes around it.")
        return
    values: dict[str, str] = {}
    for name, index in columns.items():
        value = row[index].strip() if index < len(row) else ""
        if csvsafe.is_formula(value):
            problems.append(f"{name}: starts with “{value[0]}”, which a spreadsheet runs as a "
                            "formula, so it is not imported. Type the text itself, or start "
                            "the cell with ' to keep it as text")
            continue
        value = csvsafe.unquote(value)
        limit, holds = LIMITS.get(name, (0, ""))
        if limit and len(value) > limit:
            problems.append(f"{name}: {len(value):,} characters; {holds} at most {limit:,}")
            continue
        values[name] = value
    if "prompt" in values and not values["prompt"]:
        problems.append("prompt: empty; every shot needs a prompt")
    duration, problem = _duration(values.get("duration", ""), spec)
    if problem:
        problems.append(f"duration: {problem}")
    if problems:
        result.errors.append(f"Line {start}, " + "; ".join(problems) + ".")
        return
    scene = scenes.get(values["scene"]) if values.get("scene") else None
    if scene is not None:
        scene.shots += 1
    result.shots.append(PlannedShot(
        where=f"Line {start}", title=values["title"] or derive_title(values["prompt"]),
        prompt=values["prompt"], notes=values.get("notes", ""), duration=duration,
        scene=scene))


def _duration(value: str, spec: catalogue.Endpoint | None) -> tuple[str, str]:
    """(duration, "") for a cell the project's default endpoint offers ("" keeps the project's
    default), or ("", why not)."""
    if not value:
        return "", ""
    if value.casefold() == "auto":
        seconds = "auto"
    else:
        match = SECONDS.fullmatch(value.casefold())
        if match is None:
            return "", f"“{value}” is not a number of seconds"
        seconds = str(int(match.group(1)))
    if spec is not None and seconds not in spec.durations:
        numbers = [d for d in spec.durations if d != "auto"]
        offered = f"{numbers[0]}–{numbers[-1]} s" + (", or auto" if "auto" in spec.durations
                                                     else "")
        shown = "auto" if seconds == "auto" else f"{seconds} s"
        return "", f"{shown} is not offered by {spec.label} ({offered})"
    return seconds, ""


def derive_title(text: str) -> str:
    """A card's title from a prompt: its first sentence, cut at a word to about 60 characters."""
    words = " ".join(text.split())
    sentence = re.split(r"(?<=[.!?])\s", words, maxsplit=1)[0].rstrip(".")
    if len(sentence) <= DERIVED_TITLE:
        return sentence
    cut = sentence[:DERIVED_TITLE].rsplit(" ", 1)[0]
    return cut.rstrip(",;:—-– ") + "…"


def parse_fountain(*, project: Project, source: Source) -> Plan:
    """A screenplay: each scene heading a new scene (headings repeat in screenplays, so they
    are never matched to the board's), each action paragraph a shot prompted with its text,
    and dialogue kept as the notes of the shot it follows. Dialogue that opens a scene goes
    with the scene's first action; a scene with dialogue and no action gets one shot for it,
    prompted with the scene heading. Transitions, sections and centred text are left out and
    counted in the preview.
    """
    result = Plan(source=source, default_duration=project.default_duration)
    unclosed = _unclosed_marker(source.text)
    if unclosed:
        result.errors.append(unclosed)
        return result
    try:
        screenplay = fountain.parse(io.StringIO(source.text))
    except Exception as error:
        # The library's own failure (it has a few on odd private-use characters), said plainly.
        result.errors.append(f"{source.name} could not be read as a Fountain screenplay "
                             f"({type(error).__name__}).")
        return result
    skipped: Counter[str] = Counter()
    builder = _ScreenplayBuilder(result)
    for paragraph in screenplay:
        if isinstance(paragraph, Slug):
            builder.scene(str(paragraph.line).strip())
        elif isinstance(paragraph, Action) and not paragraph.centered:
            builder.action("\n".join(str(line).rstrip() for line in paragraph.lines).strip())
        elif isinstance(paragraph, Dialog):
            builder.dialogue(_spoken(paragraph))
        elif isinstance(paragraph, DualDialog):
            builder.dialogue(_spoken(paragraph.left))
            builder.dialogue(_spoken(paragraph.right))
        elif isinstance(paragraph, Transition):
            skipped["transition"] += 1
        elif isinstance(paragraph, Section):
            skipped["section"] += 1
        elif isinstance(paragraph, Action):
            skipped["centred line"] += 1
    builder.finish()
    result.ignored = [f"{n} {what}{'s' if n != 1 else ''}" for what, n in skipped.items()]
    if len(result.shots) > MAX_SHOTS:
        result.errors = [f"{source.name} makes {len(result.shots):,} shots; an import takes at "
                         f"most {MAX_SHOTS:,}. Split the screenplay and import it in parts."]
        result.shots = []
    elif not result.shots and not result.errors:
        result.errors.append(f"{source.name} has no scene headings and no action paragraphs "
                             "to make shots from: nothing to import.")
    return result


class _ScreenplayBuilder:
    """Walks a screenplay's paragraphs in order, turning them into planned scenes and shots."""

    def __init__(self, result: Plan) -> None:
        self.result = result
        self.current: PlannedScene | None = None
        self.shot: PlannedShot | None = None
        self.waiting: list[str] = []
        self.in_scene = 0

    def _where(self) -> str:
        scene = f"Scene {len(self.result.scenes)}" if self.current else "Before the first scene"
        return f"{scene}, action {self.in_scene}"

    def _named(self, where: str) -> str:
        """`where` with the scene's heading, for messages read away from the table."""
        return f"{where} ({self.current.title[:40]})" if self.current else where

    def scene(self, title: str) -> None:
        self.close()
        number = len(self.result.scenes) + 1
        if len(title) > SCENE_MAX:
            self.result.errors.append(f"Scene {number}: the heading is {len(title):,} "
                                      f"characters; a scene title holds at most {SCENE_MAX}.")
        self.current = PlannedScene(title=title[:SCENE_MAX])
        self.result.scenes.append(self.current)
        self.shot, self.waiting, self.in_scene = None, [], 0

    def action(self, text: str) -> None:
        if not text:
            return
        self.in_scene += 1
        where = self._where()
        if len(text) > PROMPT_MAX:
            self.result.errors.append(f"{self._named(where)}: the action is {len(text):,} "
                                      f"characters; a prompt holds at most {PROMPT_MAX:,}.")
        self.shot = PlannedShot(where=where, title=derive_title(text), heading=self._named(where),
                                prompt=text[:PROMPT_MAX], scene=self.current)
        if self.current is not None:
            self.current.shots += 1
        self.result.shots.append(self.shot)
        if self.waiting:
            self.dialogue("\n".join(self.waiting))
            self.waiting = []

    def dialogue(self, speech: str) -> None:
        if self.shot is None:
            self.waiting.append(speech)
        else:
            self.shot.notes = f"{self.shot.notes}\n{speech}" if self.shot.notes else speech

    def close(self) -> None:
        """End the current scene: dialogue with no action to follow gets a shot of its own."""
        if self.waiting:
            waiting, self.waiting = self.waiting, []
            heading = self.current.title if self.current else waiting[0]
            self.action(heading)
            self.dialogue("\n".join(waiting))

    def finish(self) -> None:
        self.close()
        # A dialogue-heavy scene can outgrow a shot's notes: the screenplay is still worth
        # importing, so the notes are cut, and the preview says where before anyone confirms.
        for shot in self.result.shots:
            if len(shot.notes) > NOTES_MAX:
                self.result.warnings.append(
                    f"{shot.heading}: the dialogue after it is {len(shot.notes):,} characters, "
                    f"more than a shot's notes hold ({NOTES_MAX:,}); it is cut there.")
                shot.notes = shot.notes[:NOTES_MAX - 1] + "…"


def _spoken(dialog: Dialog) -> str:
    """"MARA: (to herself) Forty years…": who speaks, how, and what, on one line."""
    words = " ".join(str(text).strip() for _, text in dialog.blocks if str(text).strip())
    return f"{str(dialog.character).strip()}: {words}"


def _unclosed_marker(text: str) -> str:
    """Why the text is refused before screenplain sees it, or "".

    Screenplain strips /* boneyard */ and [[ notes ]] with lazy regular expressions that scan
    to the end of the text (a boneyard) or paragraph (a note) from every marker that is never
    closed: a megabyte of "/* " would take hours. When the last opening marker is closed, every
    earlier one is too, and each scan stops at its close.
    """
    opened = text.rfind("/*")
    if opened >= 0 and text.find("*/", opened + 2) < 0:
        line = text[:opened].count("\n") + 1
        return (f"Line {line}: a /* boneyard */ comment is opened and never closed. Close it "
                "with */ (or remove the /*) and import again.")
    # Paragraphs as screenplain splits them: at lines that are empty or one space.
    for paragraph in re.split(r"\n(?: ?\n)+", re.sub(r"/\*.*?\*/", "", text, flags=re.S)):
        opened = paragraph.rfind("[[")
        if opened >= 0 and paragraph.find("]]", opened + 2) < 0:
            start = " ".join(paragraph.split())[:40]
            return (f"A [[note]] is opened and not closed in the paragraph “{start}…”. Close it "
                    "with ]] in the same paragraph (or remove the [[) and import again.")
    return ""


# Between preview and confirm


class _Utf8Json:
    """JSON that keeps non-ASCII text as UTF-8 (Django's escapes it six bytes a character),
    so a megabyte of any script still fits the confirm form's request size limit."""

    def dumps(self, obj: object) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> object:
        return json.loads(data.decode())


def _signer(*, project: Project, user: User) -> signing.TimestampSigner:
    # Bound to the project and the person: a preview cannot be confirmed into another
    # project, or by someone else.
    return signing.TimestampSigner(salt=f"storyboard.imports:{project.pk}:{user.pk}")


def seal(*, project: Project, user: User, plan: Plan) -> str:
    """The previewed file's text and what the preview showed, signed for the confirm form."""
    source = plan.source
    return _signer(project=project, user=user).sign_object(
        {"kind": source.kind, "name": source.name, "text": source.text,
         "seen": plan.fingerprint()}, serializer=_Utf8Json, compress=True)


def unseal(*, project: Project, user: User, token: str) -> tuple[Source, str]:
    """The Source a preview sealed and its fingerprint, or Refused if it was altered, is for
    another project or person, or is more than an hour old."""
    try:
        data = _signer(project=project, user=user).unsign_object(
            token, serializer=_Utf8Json, max_age=SEAL_MAX_AGE)
    except signing.SignatureExpired:
        raise Refused("This preview is more than an hour old. Upload the file again to see "
                      "what it would import now.") from None
    except signing.BadSignature:
        raise Refused("This preview could not be verified (it was altered, or made for "
                      "another project or person). Upload the file again.") from None
    return Source(kind=data["kind"], name=data["name"], text=data["text"]), data["seen"]


# Applying


def apply_plan(*, project: Project, plan: Plan, user: User) -> None:
    """Create every planned scene and shot at the end of the board, in one transaction, then
    have every open board fetch itself again. Refused, creating nothing, if a scene the plan
    puts shots in was deleted meanwhile."""
    if not plan.ok:
        raise Refused("This import has errors; nothing was imported.")
    with transaction.atomic():
        project.lock()
        wanted = {s.existing.pk for s in plan.scenes if s.existing is not None}
        if wanted - set(project.scenes.filter(pk__in=wanted).values_list("pk", flat=True)):
            raise Refused("A scene this import adds shots to was deleted meanwhile; nothing "
                          "was imported. Check the preview again.")
        new = {id(s): Scene(title=s.title) for s in plan.scenes if s.existing is None}
        shots = []
        for planned in plan.shots:
            scene = None
            if planned.scene is not None:
                scene = planned.scene.existing or new[id(planned.scene)]
            shot = project.shot_with_defaults(title=planned.title, prompt=planned.prompt,
                                              notes=planned.notes, scene=scene,
                                              duration=planned.duration)
            shot.created_by = user
            shots.append(shot)
        project.append(scenes=list(new.values()), shots=shots)
        # One re-sync for the whole import rather than a card per shot (see realtime).
        realtime.board_resync(project.pk)
