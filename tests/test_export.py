"""Exports of the cut (issue #13): the animatic as a background task, what it records, its
refusals, cancelling, and the export page for every role."""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import animatic, export, generation, house, previz, realtime
from storyboard.models import Export, Generation, Shot
from tests.conftest import client_for
from tests.factories import ExportFactory, GenerationFactory, ShotFactory
from tests.helpers import work_off_the_queue

pytestmark = pytest.mark.django_db

ROLES = ("owner", "producer", "editor", "reviewer", "viewer")


def clip_bytes(*, frames: int, seed: int, audio: bool = True, size=(64, 36)) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "clip.mp4"
        previz.render(previz.RenderSpec(width=size[0], height=size[1], frames=frames,
                                        prompt="Slow push in", seed=seed, audio=audio), out)
        return out.read_bytes()


def take_of(shot: Shot, *, frames: int = 24, seed: int = 1, audio: bool = True,
            select: bool = True, size=(64, 36)) -> Generation:
    take = GenerationFactory(shot=shot, width=size[0], height=size[1], duration=frames / 24,
                             video=ContentFile(clip_bytes(frames=frames, seed=seed, audio=audio,
                                                          size=size), name="video.mp4"))
    if select:
        Shot.objects.filter(pk=shot.pk).update(selected_take=take)
    return take


def board(cast, lengths=(24, 30, 24)) -> list[Shot]:
    """cast.shot and more shots after it, each with a selected take of `lengths[n]` frames."""
    shots = [cast.shot] + [ShotFactory(project=cast.project, title=f"Shot {n + 2}",
                                       duration="1") for n in range(len(lengths) - 1)]
    for n, (shot, frames) in enumerate(zip(shots, lengths, strict=True)):
        take_of(shot, frames=frames, seed=n, audio=n % 2 == 0)
    return shots


def start(cast, user=None, kind=Export.Kind.ANIMATIC, **options) -> Export:
    made, _new = export.start_export(project=cast.project, user=user or cast.viewer, kind=kind,
                                     options=export.Options(**options))
    return made


def run(made: Export) -> Export:
    export.run(export_id=made.pk)
    made.refresh_from_db()
    return made


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_an_animatic_of_house_takes_is_a_stream_copy_of_them(cast):
    shots = board(cast)
    made = run(start(cast))
    takes = [Shot.objects.get(pk=s.pk).selected_take for s in shots]
    assert made.state == Export.State.DONE, made.message
    assert made.take_ids == [t.pk for t in takes]
    assert made.shot_ids == [s.pk for s in shots]
    assert made.reencoded == []
    assert "nothing was re-encoded" in made.message
    assert made.duration == pytest.approx((24 + 30 + 24) / 24, abs=1 / 24)
    assert (made.progress_done, made.progress_total) == (3, 3)
    path = Path(made.file.path)
    assert made.size == path.stat().st_size
    with av.open(str(path)) as container:
        assert (len(container.streams.video), len(container.streams.audio)) == (1, 1)
        copied = [bytes(p) for p in container.demux(video=0) if p.size]
    sources = []
    for take in takes:
        with av.open(take.video.path) as container:
            sources += [bytes(p) for p in container.demux(video=0) if p.size]
    assert copied == sources  # no re-encode happened
    frames = decoded_frames(path)
    for take, at in zip(takes, (0, 24, 54), strict=True):
        assert np.array_equal(frames[at], decoded_frames(Path(take.video.path))[0])


@pytest.mark.django_db(transaction=True)
def test_it_runs_as_a_background_task_and_pushes_progress(cast, monkeypatch):
    board(cast, lengths=(24, 24))
    pushed = []
    monkeypatch.setattr(realtime, "exports_changed", lambda project_id: pushed.append(
        list(Export.objects.values_list("state", "progress_done"))))
    made = start(cast)
    assert DBTaskResult.objects.filter(task_path="storyboard.tasks.run_export").count() == 1
    work_off_the_queue()
    made.refresh_from_db()
    assert made.state == Export.State.DONE
    assert pushed == [[("queued", 0)], [("running", 0)], [("running", 1)], [("running", 2)],
                      [("done", 2)]]


def test_the_push_carries_the_list_and_the_board_strip(cast):
    made = ExportFactory(project=cast.project, state=Export.State.RUNNING, progress_total=4,
                         progress_done=1, created_by=cast.viewer)
    change = realtime.exports_changed(cast.project.pk)
    html = change.html_for(realtime.EDITORS)
    assert f'id="export-{made.pk}"' in html
    assert 'id="export-progress"' in html
    assert "1 of 4 shots" in html
    assert reverse("sb:export-cancel", args=[made.pk]) in html
    assert reverse("sb:export-cancel", args=[made.pk]) not in change.html_for(realtime.VIEWERS)


def test_approved_takes_only_makes_slates_of_the_rest(cast):
    shots = board(cast, lengths=(24, 24))
    approved = Shot.objects.get(pk=shots[1].pk).selected_take
    Shot.objects.filter(pk=shots[1].pk).update(review=Shot.Review.APPROVED, review_take=approved)
    Shot.objects.filter(pk=shots[0].pk).update(duration="2")
    made = run(start(cast, selected=False))
    assert made.state == Export.State.DONE, made.message
    assert made.take_ids == [None, approved.pk]
    assert made.reencoded == [shots[0].pk]
    assert "Shot 1 is a slate" in made.message
    # The slate lasts the shot's duration (2 s), then the approved take (1 s).
    assert made.duration == pytest.approx(3.0, abs=1 / 24)


def test_a_shot_without_a_take_becomes_a_slate(cast):
    shots = board(cast, lengths=(24,))
    ShotFactory(project=cast.project, title="Harbour", duration="1")
    made = run(start(cast))
    assert made.state == Export.State.DONE, made.message
    assert made.take_ids[1] is None
    assert len(made.reencoded) == 1
    assert made.reencoded != [shots[0].pk]
    assert made.duration == pytest.approx(2.0, abs=1 / 24)


def test_a_take_of_another_size_is_re_encoded_and_named(cast):
    shots = board(cast, lengths=(24, 24, 24))
    take_of(shots[2], size=(128, 72))
    made = run(start(cast))
    assert made.state == Export.State.DONE, made.message
    assert made.reencoded == [shots[2].pk]
    assert "Shot 3 was re-encoded" in made.message
    with av.open(made.file.path) as container:
        assert container.streams.video[0].codec_context.width == 64


def mute_clip(frames: int = 24) -> bytes:
    """A house clip in all but its missing audio track (stored before every clip had one)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "mute.mp4"
        with av.open(str(out), "w", format="mp4", options=dict(house.MUXER_OPTIONS)) as target:
            stream = house.add_video_stream(target, 64, 36)
            for index in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((36, 64, 3), 90, np.uint8))
                frame.pts = index
                target.mux(stream.encode(frame))
            target.mux(stream.encode(None))
        return out.read_bytes()


def test_a_take_without_an_audio_track_is_re_encoded_with_a_silent_one(cast):
    shots = board(cast, lengths=(24, 24))
    old = GenerationFactory(shot=shots[0], width=64, height=36,
                            video=ContentFile(mute_clip(), name="video.mp4"))
    Shot.objects.filter(pk=shots[0].pk).update(selected_take=old)
    made = run(start(cast))
    assert made.state == Export.State.DONE, made.message
    assert made.reencoded == [shots[0].pk]
    assert made.duration == pytest.approx(2.0, abs=1 / 24)


def test_clips_encoded_now_that_differ_from_the_copied_takes_re_encode_those_too(
        cast, monkeypatch):
    shots = board(cast, lengths=(24, 24, 24))
    ShotFactory(project=cast.project, title="No take yet", duration="1")
    real_signature = animatic.signature

    def as_if_the_encoder_had_changed(path):
        # What export.py encodes now (clip-N.mp4 in its work folder) has other H.264 settings
        # than the stored takes.
        found = real_signature(path)
        if path.name.startswith("clip-"):
            return dataclasses.replace(found, video_extradata=b"other settings")
        return found

    monkeypatch.setattr(animatic, "signature", as_if_the_encoder_had_changed)
    made = run(start(cast))
    assert made.state == Export.State.DONE, made.message
    assert sorted(made.reencoded) == sorted([s.pk for s in shots] + [made.shot_ids[-1]])
    assert "older encoder settings" in made.message


def test_burn_in_re_encodes_every_clip_and_says_so(cast):
    shots = board(cast, lengths=(24, 24))
    made = run(start(cast, burn_in=True))
    assert made.state == Export.State.DONE, made.message
    assert made.reencoded == [s.pk for s in shots]
    assert "re-encoded for captions" in made.message
    assert made.duration == pytest.approx(2.0, abs=1 / 24)


def test_no_takes_at_all_is_refused(cast):
    with pytest.raises(export.ExportRefused, match="no shot of Spot has an approved or sel"):
        start(cast)
    assert not Export.objects.exists()


def test_a_missing_file_is_refused_naming_the_shot(cast):
    shots = board(cast, lengths=(24, 24))
    take = Shot.objects.get(pk=shots[1].pk).selected_take
    take.video.storage.delete(take.video.name)
    with pytest.raises(export.ExportRefused,
                       match=f"Shot 2 “Shot 2”: the video of its take #{take.pk} is missing"):
        start(cast)
    assert not Export.objects.exists()


def test_a_file_that_goes_missing_while_queued_fails_the_export_naming_the_shot(cast):
    shots = board(cast, lengths=(24, 24))
    made = start(cast)
    take = Shot.objects.get(pk=shots[0].pk).selected_take
    take.video.storage.delete(take.video.name)
    made = run(made)
    assert made.state == Export.State.FAILED
    assert "Shot 1 “Opening”" in made.message
    assert "missing" in made.message
    assert not made.file


def test_a_cancelled_export_leaves_no_file(cast, monkeypatch, settings):
    board(cast, lengths=(24, 24, 24))
    made = start(cast, user=cast.viewer)
    real_progress = export.progress

    def cancel_after_the_first_shot(job, done):
        real_progress(job, done)
        if done == 1:
            export.cancel_export(export=Export.objects.get(pk=job.pk), user=cast.viewer)

    monkeypatch.setattr(export, "progress", cancel_after_the_first_shot)
    made = run(made)
    assert made.state == Export.State.CANCELLED
    assert made.message == f"Cancelled by {cast.viewer.label}."
    assert not made.file
    assert not list(Path(settings.MEDIA_ROOT).rglob("exports/*"))
    response = client_for(cast.viewer).get(reverse("sb:export-file", args=[made.pk]))
    assert response.status_code == 404


def test_a_cancel_that_comes_as_it_finishes_throws_the_file_away(cast, monkeypatch, settings):
    board(cast, lengths=(24,))
    made = start(cast)
    real_going_on = export._going_on
    calls = []

    def cancelled_after_the_last_check(job):
        real_going_on(job)
        calls.append(job.pk)
        if len(calls) == 3:  # the check before the file is stored
            Export.objects.filter(pk=job.pk).update(state=Export.State.CANCELLED)

    monkeypatch.setattr(export, "_going_on", cancelled_after_the_last_check)
    made = run(made)
    assert made.state == Export.State.CANCELLED
    assert not made.file
    assert not list(Path(settings.MEDIA_ROOT).rglob("exports/*"))


def test_the_same_cut_twice_while_it_runs_is_one_export(cast):
    board(cast, lengths=(24,))
    first = start(cast, user=cast.viewer)
    again, new = export.start_export(project=cast.project, user=cast.editor,
                                     kind=Export.Kind.ANIMATIC, options=export.Options())
    assert (again, new) == (first, False)
    other, new = export.start_export(project=cast.project, user=cast.editor,
                                     kind=Export.Kind.ANIMATIC,
                                     options=export.Options(burn_in=True))
    assert new
    assert other != first
    run(first)
    # Once it ended, asking again makes a new one.
    assert start(cast) != first
    assert Export.objects.count() == 3


def test_an_export_whose_worker_died_is_failed_by_the_reconciler_and_can_be_asked_again(cast):
    board(cast, lengths=(24,))
    made = start(cast)
    Export.objects.filter(pk=made.pk).update(
        state=Export.State.RUNNING, updated=timezone.now() - timedelta(minutes=11))
    lively = ExportFactory(project=cast.project, state=Export.State.RUNNING)
    assert generation.reconcile() == 1
    made.refresh_from_db()
    assert made.state == Export.State.FAILED
    assert "stopped before it finished" in made.message
    assert Export.objects.get(pk=lively.pk).state == Export.State.RUNNING
    assert start(cast) != made


def test_running_twice_does_the_work_once(cast):
    board(cast, lengths=(24,))
    made = run(start(cast))
    name = made.file.name
    assert run(made).file.name == name


# ---------------------------------------------------------------------------------------------
# The page


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_export_and_download(cast, role):
    board(cast, lengths=(24,))
    client = client_for(cast.member(role))
    page = client.get(reverse("sb:export", args=[cast.project.pk]))
    assert page.status_code == 200
    assert b'id="export-form"' in page.content
    response = client.post(reverse("sb:export", args=[cast.project.pk]),
                           {"kind": "animatic", "takes": "selected", "resolution": "source"})
    assert response.status_code == 302
    made = run(Export.objects.get())
    assert made.created_by == cast.member(role)
    download = client.get(reverse("sb:export-file", args=[made.pk]))
    assert download.status_code == 200
    assert download["Content-Type"] == "video/mp4"
    assert download["Content-Disposition"] == f'attachment; filename="{made.download_name}"'
    assert b"".join(download.streaming_content) == Path(made.file.path).read_bytes()


@pytest.mark.parametrize("who", ["outsider", "anonymous"])
def test_others_get_nothing_and_change_nothing(cast, who):
    board(cast, lengths=(24,))
    made = ExportFactory(project=cast.project, created_by=cast.editor)
    running = ExportFactory(project=cast.project, state=Export.State.RUNNING)
    client = client_for(cast.outsider if who == "outsider" else None)
    urls = [reverse("sb:export", args=[cast.project.pk]),
            reverse("sb:export-file", args=[made.pk]),
            reverse("sb:export-cancel", args=[running.pk])]
    for url in urls:
        for response in (client.get(url), client.post(url, {"kind": "animatic"})):
            if who == "outsider":
                assert response.status_code in (404, 405), url
            else:
                assert response.status_code in (302, 405), url
                if response.status_code == 302:
                    assert response["Location"].startswith(reverse("accounts:login"))
    assert Export.objects.count() == 2
    assert Export.objects.get(pk=running.pk).state == Export.State.RUNNING


def test_htmx_gets_the_list_and_a_refusal_in_the_form(cast):
    client = client_for(cast.viewer)
    url = reverse("sb:export", args=[cast.project.pk])
    refused = client.post(url, {"kind": "animatic"}, headers={"HX-Request": "true"})
    assert refused.status_code == 422
    assert b'id="export-error"' in refused.content
    assert b"no shot of Spot" in refused.content
    board(cast, lengths=(24,))
    queued = client.post(url, {"kind": "animatic"}, headers={"HX-Request": "true"})
    assert queued.status_code == 200
    assert b'id="export-list"' in queued.content
    assert "queued" in queued["HX-Trigger"]
    listed = client.get(url, headers={"HX-Request": "true"})
    assert listed.content.count(b'class="export-row') == 1


def test_without_htmx_a_refusal_is_a_message_after_a_redirect(cast):
    client = client_for(cast.viewer)
    url = reverse("sb:export", args=[cast.project.pk])
    response = client.post(url, {"kind": "animatic"}, follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert b"Nothing was exported" in response.content


def test_whoever_asked_or_an_editor_may_cancel_not_another_viewer(cast):
    mine = ExportFactory(project=cast.project, state=Export.State.RUNNING,
                         created_by=cast.viewer)
    theirs = ExportFactory(project=cast.project, state=Export.State.QUEUED,
                           created_by=cast.reviewer)
    viewer = client_for(cast.viewer)
    assert viewer.post(reverse("sb:export-cancel", args=[theirs.pk])).status_code == 403
    assert Export.objects.get(pk=theirs.pk).state == Export.State.QUEUED
    assert viewer.post(reverse("sb:export-cancel", args=[mine.pk])).status_code == 302
    assert Export.objects.get(pk=mine.pk).state == Export.State.CANCELLED
    editor = client_for(cast.editor)
    assert editor.post(reverse("sb:export-cancel", args=[theirs.pk])).status_code == 302
    assert Export.objects.get(pk=theirs.pk).state == Export.State.CANCELLED
    # Ended already: said, nothing changes.
    again = editor.post(reverse("sb:export-cancel", args=[theirs.pk]), follow=True)
    assert b"already ended" in again.content


def test_the_board_links_to_the_export_page_and_shows_running_exports(cast):
    ExportFactory(project=cast.project, state=Export.State.RUNNING, progress_total=3)
    html = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])).content
    assert f'href="{reverse("sb:export", args=[cast.project.pk])}"'.encode() in html
    assert b"1 of 3 shots done" in html
