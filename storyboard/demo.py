"""Demo data: a team with one person per role and a storyboarded 30-second spot.

Frames are painted with Pillow at run time (nothing is downloaded) and stored through the same
upload pipeline users go through, so thumbnails and probes are real.
"""

from __future__ import annotations

import io
import math
import random

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image, ImageDraw, ImageFilter

from accounts.models import Role, Team, User
from storyboard.models import Asset, Budget, Project, Scene

DEMO_PASSWORD = "storyboard-demo"  # noqa: S105 - printed in the README on purpose
DEMO_TEAM = "Northlight Studio"
DEMO_PEOPLE = [
    ("olivia", "Olivia Owner", Role.OWNER),
    ("paul", "Paul Producer", Role.PRODUCER),
    ("emma", "Emma Editor", Role.EDITOR),
    ("rita", "Rita Reviewer", Role.REVIEWER),
    ("victor", "Victor Viewer", Role.VIEWER),
]

# (scene, title, prompt, palette: sky top, sky bottom, ground, sun)
DEMO_SHOTS = [
    ("Dawn", "Cliff at first light",
     "Wide establishing shot of a lighthouse on a sea cliff at dawn, slow push in, mist rolling "
     "over the rocks, gulls circling.", ("#1b2345", "#f39c6b", "#141821", "#ffd39a")),
    ("Dawn", "Keeper's window",
     "Close-up of the keeper's window, warm lamp light inside, camera static, condensation on "
     "the glass.", ("#24304f", "#e9a27c", "#2a1f1a", "#ffe2b0")),
    ("Dawn", "Kettle and map",
     "Top-down shot of a kettle steaming beside an old sea chart, slow pan right across the "
     "table.", ("#2e2a26", "#6b4f3a", "#3a2c22", "#f2c48d")),
    ("Storm", "Weather turns",
     "Time-lapse of storm clouds rolling in over the sea, camera tilt up from the waves to the "
     "sky.", ("#0f1320", "#3d4b63", "#0b0e14", "#9fb3c8")),
    ("Storm", "The beam",
     "The lighthouse beam sweeps through driving rain, orbit around the lamp room, lightning "
     "flashes.", ("#0a0d18", "#27304a", "#06080d", "#fff6c8")),
    ("Storm", "Ship in the swell",
     "A fishing boat rides a huge swell toward the light, handheld, spray hitting the lens.",
     ("#0c1424", "#2d4560", "#08101c", "#cfe3ff")),
    ("Morning after", "Safe harbour",
     "Pull out from the boat tied up safely in the harbour, sunrise, calm water, gulls.",
     ("#3a5a8c", "#f7c59f", "#1e2c3c", "#fff1cf")),
]


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def paint_frame(seed: int, palette: tuple[str, str, str, str], size=(1280, 720)) -> bytes:
    """A painterly landscape frame: sky gradient, sun, sea and a headland with a lighthouse."""
    rnd = random.Random(seed)
    width, height = size
    top, bottom, ground, sun = (_hex(c) for c in palette)
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    horizon = int(height * rnd.uniform(0.55, 0.68))
    for y in range(height):
        t = min(1.0, y / horizon)
        color = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=color)
    sx, sy, r = int(width * rnd.uniform(0.25, 0.75)), int(horizon * rnd.uniform(0.5, 0.9)), 46
    glow = Image.new("L", size, 0)
    ImageDraw.Draw(glow).ellipse([sx - r * 3, sy - r * 3, sx + r * 3, sy + r * 3], fill=90)
    img.paste(Image.new("RGB", size, sun), mask=glow.filter(ImageFilter.GaussianBlur(40)))
    draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=sun)
    sea = tuple(max(0, int(c * 0.6)) for c in bottom)
    draw.rectangle([0, horizon, width, height], fill=sea)
    for i in range(40):
        y = horizon + int((height - horizon) * (i / 40) ** 1.6)
        draw.line([(0, y), (width, y)], fill=tuple(min(255, c + 18) for c in sea), width=1)
    cliff = [(0, height)]
    x = 0
    base = horizon - int(height * 0.05)
    while x <= width * 0.45:
        cliff.append((x, base - int(40 * math.sin(x / 90 + seed)) - rnd.randint(0, 14)))
        x += 30
    cliff += [(int(width * 0.5), height)]
    draw.polygon(cliff, fill=ground)
    lx, ly = int(width * 0.3), base - 60
    tower = [(lx - 14, ly), (lx + 14, ly), (lx + 9, ly - 150), (lx - 9, ly - 150)]
    draw.polygon(tower, fill="#e8e4dc")
    draw.rectangle([lx - 12, ly - 175, lx + 12, ly - 150], fill=sun)
    draw.polygon([(lx - 16, ly - 175), (lx + 16, ly - 175), (lx, ly - 195)], fill="#c0392b")
    buf = io.BytesIO()
    img.filter(ImageFilter.SMOOTH).save(buf, "JPEG", quality=88)
    return buf.getvalue()


@transaction.atomic
def load_demo() -> tuple[Team, Project, bool]:
    """Create the demo team and project once; returns (team, project, created)."""
    team = Team.objects.filter(name=DEMO_TEAM).first()
    if team is not None:
        return team, team.projects.order_by("pk").first(), False
    team = Team.objects.create(name=DEMO_TEAM)
    Budget.objects.create(team=team, limit_micros=200_000_000)
    users = {}
    for username, name, role in DEMO_PEOPLE:
        first, last = name.split(" ", 1)
        user = User.objects.filter(username=username).first() or User(username=username)
        user.first_name, user.last_name = first, last
        user.email = f"{username}@example.com"
        user.set_password(DEMO_PASSWORD)
        user.save()
        team.add_member(user, role)
        user.switch_team(team)
        users[role] = user
    editor = users[Role.EDITOR]
    project = Project.objects.create(
        team=team, name="Lighthouse — 30 s spot", created_by=users[Role.OWNER],
        description="A keeper, a storm and a boat brought home. Animatic for the client call.",
        default_endpoint="bytedance/seedance-2.0/fast/image-to-video",
        default_resolution="720p", default_aspect_ratio="16:9", default_duration="5",
    )
    scenes: dict[str, Scene] = {}
    for index, (scene_title, title, prompt, palette) in enumerate(DEMO_SHOTS):
        if scene_title not in scenes:
            scenes[scene_title] = Scene.objects.create(project=project, title=scene_title,
                                                       position=len(scenes))
        upload = SimpleUploadedFile(f"{title.lower().replace(' ', '-')}.jpg",
                                    paint_frame(index + 1, palette), content_type="image/jpeg")
        frame = Asset.objects.store(project=project, upload=upload, user=editor)
        shot = project.new_shot(title=title, prompt=prompt, scene=scenes[scene_title])
        shot.start_frame = frame
        shot.created_by = editor
        shot.duration = "4" if index % 3 == 2 else "5"
        # Every shot starts as a draft: review is about takes, and the demo has none yet.
        shot.save(update_fields=["start_frame", "created_by", "duration"])
    return team, project, True
