"""Timelines of the cut (issue #13): OpenTimelineIO with every clip's provenance, read back with
opentimelineio; CMX 3600 EDL and FCP XML loaded back through their adapters; the zip bundle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import opentimelineio as otio
import pytest

from storyboard import export
from storyboard.models import Comment, Export, ReviewDecision, Shot
from tests.factories import ShotFactory
from tests.test_export import board, run, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def cut(cast):
    """Three shots: two with takes (the second approved, with two comments), one without."""
    shots = board(cast, lengths=(24, 30))
    take = Shot.objects.get(pk=shots[1].pk).selected_take
    take.input = {"prompt": "Pan right across the bay", "resolution": "480p", "duration": "1",
                  "seed": 42}
    take.seed, take.request_id, take.actual_micros = 42, "req-123", 250_000
    take.save(update_fields=["input", "seed", "request_id", "actual_micros"])
    Shot.objects.filter(pk=shots[1].pk).update(review=Shot.Review.APPROVED, review_take=take)
    ReviewDecision.objects.create(shot=shots[1], take=take, user=cast.reviewer, kind="approve",
                                  from_state="in_review", to_state="approved")
    Comment.objects.create(take=take, user=cast.reviewer, body="Too dark here", frame=5,
                           frame_end=10)
    Comment.objects.create(take=take, user=cast.editor, body="Hold longer", frame=20)
    shots.append(ShotFactory(project=cast.project, title="Harbour", duration="2"))
    return shots, take


def read_back(made: Export, adapter: str | None = None) -> otio.schema.Timeline:
    return otio.adapters.read_from_file(made.file.path, adapter_name=adapter)


def test_the_otio_round_trip_keeps_clips_durations_and_provenance(cast, cut):
    _shots, take = cut
    made = run(start(cast, kind=Export.Kind.OTIO))
    assert made.state == Export.State.DONE, made.message
    timeline = read_back(made)
    video, audio = timeline.tracks
    assert (video.kind, audio.kind) == ("Video", "Audio")
    assert [type(item).__name__ for item in video] == ["Clip", "Clip", "Gap"]
    assert [item.duration().to_frames() for item in video] == [24, 30, 48]
    assert [item.duration().to_frames() for item in audio] == [24, 30, 48]
    assert timeline.duration().to_seconds() == pytest.approx(made.duration) == 102 / 24
    first, second, gap = video
    assert first.media_reference.target_url == f"media/shot-001-take-{made.take_ids[0]}.mp4"
    about = second.metadata["storyboard"]
    assert about["shot_number"] == 2
    assert about["title"] == "Shot 2"
    assert about["prompt"] == "Pan right across the bay"
    assert about["endpoint"] == take.endpoint
    assert about["parameters"] == take.input
    assert about["seed"] == 42
    assert about["request_id"] == "req-123"
    assert about["cost"] == "$0.25"
    assert about["review_state"] == "Approved"
    assert about["approver"] == cast.reviewer.label
    assert gap.metadata["storyboard"]["title"] == "Harbour"
    markers = second.markers
    assert [m.name for m in markers] == ["Too dark here", "Hold longer"]
    assert markers[0].marked_range.start_time.to_frames() == 5
    assert markers[0].marked_range.duration.to_frames() == 5
    assert markers[1].marked_range.start_time.to_frames() == 20
    assert markers[0].metadata["storyboard"]["author"] == cast.reviewer.label


def test_the_edl_loads_back_through_its_adapter(cast, cut):
    made = run(start(cast, kind=Export.Kind.EDL))
    assert made.state == Export.State.DONE, made.message
    timeline = read_back(made, "cmx_3600")
    clips = list(timeline.find_clips())
    assert [c.duration().to_frames() for c in clips] == [24, 30]
    # An EDL lists events only: the trailing gap of the take-less shot has none.
    assert timeline.duration().to_frames() == 24 + 30
    assert "Shot 2" in clips[1].name


def test_the_fcp_xml_loads_back_through_its_adapter(cast, cut):
    made = run(start(cast, kind=Export.Kind.FCPXML))
    assert made.state == Export.State.DONE, made.message
    loaded = read_back(made, "fcp_xml")
    timeline = loaded if isinstance(loaded, otio.schema.Timeline) else loaded[0]
    clips = [c for c in timeline.find_clips() if c.parent().kind == "Video"]
    assert [c.duration().to_frames() for c in clips] == [24, 30]
    assert clips[0].media_reference.target_url.endswith(
        f"shot-001-take-{made.take_ids[0]}.mp4")


def test_the_bundle_opens_on_another_machine(cast, cut, tmp_path):
    made = run(start(cast, kind=Export.Kind.BUNDLE))
    assert made.state == Export.State.DONE, made.message
    with zipfile.ZipFile(made.file.path) as archive:
        archive.extractall(tmp_path / "elsewhere")
    folder = tmp_path / "elsewhere"
    assert {p.name for p in folder.iterdir()} == {"cut.otio", "cut.edl", "cut.xml", "media"}
    timeline = otio.adapters.read_from_file(str(folder / "cut.otio"))
    for clip in timeline.find_clips():
        media = folder / clip.media_reference.target_url
        assert media.is_file()
    took = [Path(Shot.objects.get(pk=pk).selected_take.video.path).read_bytes()
            for pk in made.shot_ids[:2]]
    assert sorted(p.read_bytes() for p in (folder / "media").iterdir()) == sorted(took)


def test_a_timeline_is_refused_like_the_animatic_without_takes(cast):
    with pytest.raises(export.ExportRefused, match="no shot of Spot"):
        start(cast, kind=Export.Kind.OTIO)
