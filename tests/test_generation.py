"""Takes on the local renderer: the state machine, the stored video, cancel, retry, recovery."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import av
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.tasks import task_backends
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import catalogue, generation
from storyboard.models import Asset, Generation, Shot
from tests.conftest import client_for
from tests.factories import ShotFactory
from tests.helpers import work_off_the_queue
from tests.hostile_files import good

pytestmark = pytest.mark.django_db
State = Generation.State
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"


def _quick_shot(project, **kwargs) -> Shot:
    # Seedance 1.0 lite at 480p for 2 s: the smallest real take, so tests stay fast.
    defaults = {"mode": "text", "endpoint": LITE_T2V, "resolution": "480p",
                "aspect_ratio": "16:9", "duration": "2", "generate_audio": False,
                "prompt": "Slow push in on the lighthouse."}
    return ShotFactory(project=project, **{**defaults, **kwargs})


def _frame(project, name="frame.png") -> Asset:
    return Asset.objects.store(project=project, upload=SimpleUploadedFile(name, good("png")),
                               user=None)


def test_it_refuses_a_shot_without_a_prompt(cast):
    shot = _quick_shot(cast.project, prompt="  ")
    with pytest.raises(generation.GenerationRefused, match="Write a prompt"):
        generation.start_generation(shot=shot, user=cast.editor)
    assert Generation.objects.count() == 0


def test_it_refuses_image_mode_without_a_start_frame(cast):
    shot = _quick_shot(cast.project, mode="image", endpoint=LITE_I2V)
    with pytest.raises(generation.GenerationRefused, match="needs a start frame"):
        generation.start_generation(shot=shot, user=cast.editor)


def test_it_refuses_a_prompt_naming_a_missing_reference(cast):
    shot = _quick_shot(cast.project, mode="reference",
                       endpoint="bytedance/seedance-2.0/fast/reference-to-video",
                       duration="4", prompt="@Image1 meets @Image3 on the cliff.")
    shot.references.set([_frame(cast.project, "a.png"), _frame(cast.project, "b.png")])
    with pytest.raises(generation.GenerationRefused, match="@Image3, but only 2 image"):
        generation.start_generation(shot=shot, user=cast.editor)


def test_it_refuses_a_continuing_shot_whose_upstream_has_no_take(cast):
    shot = _quick_shot(cast.project, continues_from=cast.shot, mode="image", endpoint=LITE_I2V)
    with pytest.raises(generation.GenerationRefused, match="no finished take"):
        generation.start_generation(shot=shot, user=cast.editor)


def test_it_queues_the_take_after_commit(cast, django_capture_on_commit_callbacks):
    shot = _quick_shot(cast.project)
    with django_capture_on_commit_callbacks(execute=True):
        take = generation.start_generation(shot=shot, user=cast.editor)
    assert take.state == State.HELD
    assert take.estimated_micros == shot.estimate().micros
    assert take.input["prompt"] == shot.prompt
    queued = DBTaskResult.objects.get()
    assert queued.task_path == "storyboard.tasks.run_generation"
    assert queued.args_kwargs["kwargs"] == {"take_id": take.pk}


def _render(cast, **kwargs) -> Generation:
    shot = _quick_shot(cast.project, **kwargs)
    take = generation.start_generation(shot=shot, user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    return take


def test_it_renders_and_stores_a_real_video(cast):
    take = _render(cast)
    assert take.state == State.COMPLETED
    assert (take.width, take.height) == catalogue.output_size("480p", "16:9")
    with av.open(take.video.path) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (take.width, take.height)
        assert stream.frames == 48
        assert stream.average_rate == 24
    assert Path(take.poster.path).exists()
    assert take.progress == 1
    assert take.simulated
    assert take.actual_micros == catalogue.price_micros(endpoint=LITE_T2V, width=take.width,
                                                        height=take.height, frames=48)
    assert take.submitted_at <= take.started_at <= take.finished_at
    take.shot.refresh_from_db()
    assert take.shot.selected_take == take


def test_it_starts_an_image_take_on_the_start_frame(cast):
    frame = _frame(cast.project)
    take = _render(cast, mode="image", endpoint=LITE_I2V, start_frame=frame)
    assert take.state == State.COMPLETED


def test_a_continuing_take_starts_from_the_upstream_takes_last_frame(cast):
    cast.shot.delete()
    first = _render(cast)
    second_shot = _quick_shot(cast.project, continues_from=first.shot, mode="image",
                              endpoint=LITE_I2V)
    take = generation.start_generation(shot=second_shot, user=cast.editor)
    assert take.upstream == first
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    first.refresh_from_db()
    assert take.upstream_frame_sha256 == first.last_frame_sha256
    # A frame of the take, not a file in the project's library.
    assert not Asset.objects.filter(from_take=first).exists()


def test_a_second_drive_changes_nothing(cast):
    take = _render(cast)
    finished = take.finished_at
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert (take.state, take.finished_at) == (State.COMPLETED, finished)


def test_it_cancels_a_waiting_take_at_once(cast):
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    generation.cancel(take=take)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.CANCELED
    assert not take.video


def test_it_cancels_a_render_in_progress(cast, monkeypatch):
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    original = Generation.report

    def report_then_cancel(self, **kwargs):
        Generation.objects.filter(pk=self.pk).update(cancel_requested=True)
        return original(self, **kwargs)

    monkeypatch.setattr(Generation, "report", report_then_cancel)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.CANCELED
    assert "Canceled" in take.error


def _pushed_states(cast, monkeypatch, clock) -> list[tuple[str, float]]:
    monkeypatch.setattr(generation, "_clock", clock)
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    pushed: list[tuple[str, float]] = []
    monkeypatch.setattr(generation.realtime, "broadcast_take",
                        lambda take: pushed.append((take.state, take.progress)))
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    return pushed


def test_a_quick_render_pushes_its_moves_and_its_end_not_every_step(cast, monkeypatch):
    # The clock stands still: the whole render takes less than PROGRESS_EVERY.
    pushed = _pushed_states(cast, monkeypatch, clock=lambda: 0.0)
    assert [state for state, _ in pushed] == [
        State.SUBMITTING, State.IN_PROGRESS, State.IN_PROGRESS, State.DOWNLOADING,
        State.COMPLETED]
    assert pushed[2][1] == pytest.approx(0.95)


def test_a_slow_render_pushes_its_progress_step_by_step(cast, monkeypatch):
    ticks = iter(range(10_000))
    # Every look at the clock is a second later: each PROGRESS_STEP of the render is pushed.
    pushed = _pushed_states(cast, monkeypatch, clock=lambda: float(next(ticks)))
    progress = [p for state, p in pushed if state == State.IN_PROGRESS]
    assert len(progress) > 10
    assert progress == sorted(progress)


def test_it_will_not_cancel_a_finished_take(cast):
    take = _render(cast)
    with pytest.raises(generation.GenerationRefused, match="already finished"):
        generation.cancel(take=take)
    take.refresh_from_db()
    assert take.state == State.COMPLETED


def test_the_reconciler_restarts_a_render_whose_worker_died(cast):
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    # The worker got as far as rendering, then died: nothing moves the take any more.
    Generation.objects.filter(pk=take.pk).update(
        state=State.IN_PROGRESS, progress=0.4, updated=timezone.now() - timedelta(minutes=5)
    )
    assert generation.reconcile() == 1
    take.refresh_from_db()
    assert take.state == State.PENDING
    assert DBTaskResult.objects.filter(args_kwargs__kwargs={"take_id": take.pk}).exists()
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.COMPLETED


def test_the_reconciler_leaves_fresh_takes_alone(cast):
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    Generation.objects.filter(pk=take.pk).update(state=State.IN_PROGRESS)
    assert generation.reconcile() == 0


@pytest.mark.django_db(transaction=True)
def test_the_real_queue_runs_the_take(cast, django_capture_on_commit_callbacks):
    assert type(task_backends["default"]).__name__ == "DatabaseBackend"
    with django_capture_on_commit_callbacks(execute=True):
        take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    work_off_the_queue()
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"


# Views


def _post(user, name, *args):
    return client_for(user).post(reverse(name, args=args), HTTP_HX_REQUEST="true")


def test_an_editor_can_generate(cast):
    shot = _quick_shot(cast.project)
    response = _post(cast.editor, "sb:shot-generate", shot.pk)
    assert response.status_code == 200
    assert b'id="take-' in response.content
    assert Generation.objects.get().created_by == cast.editor


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_it_refuses_generate_for_read_only_roles(cast, role):
    shot = _quick_shot(cast.project)
    assert _post(cast.member(role), "sb:shot-generate", shot.pk).status_code == 403
    assert Generation.objects.count() == 0


def test_it_hides_another_teams_shot(cast):
    shot = _quick_shot(cast.project)
    assert _post(cast.outsider, "sb:shot-generate", shot.pk).status_code == 404
    assert Generation.objects.count() == 0


def test_it_explains_a_refused_generate(cast):
    shot = _quick_shot(cast.project, prompt="")
    response = _post(cast.editor, "sb:shot-generate", shot.pk)
    assert response.status_code == 422
    assert "Write a prompt" in response.headers["HX-Trigger"]


def test_cancel_and_retry_obey_roles(cast):
    take = generation.start_generation(shot=_quick_shot(cast.project), user=cast.editor)
    assert _post(cast.viewer, "sb:take-cancel", take.uid).status_code == 403
    assert _post(cast.outsider, "sb:take-cancel", take.uid).status_code == 404
    assert _post(cast.editor, "sb:take-cancel", take.uid).status_code == 200
    take.refresh_from_db()
    assert take.state == State.CANCELED
    assert _post(cast.reviewer, "sb:take-retry", take.uid).status_code == 403
    assert _post(cast.producer, "sb:take-retry", take.uid).status_code == 200
    assert Generation.objects.count() == 2


def test_take_files_are_served_to_members_only(cast):
    take = _render(cast)
    url = reverse("sb:take-file", args=[take.uid, "video"])
    response = client_for(cast.viewer).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert "sandbox" in response["Content-Security-Policy"]
    b"".join(response.streaming_content)
    assert client_for(cast.outsider).get(url).status_code == 404
    assert client_for(None).get(url).status_code == 302


def test_select_shows_a_take_on_the_board(cast):
    first, second = _render(cast), None
    second = generation.start_generation(shot=first.shot, user=cast.editor)
    generation.drive(take_id=second.pk)
    assert _post(cast.viewer, "sb:take-select", second.uid).status_code == 403
    assert _post(cast.editor, "sb:take-select", second.uid).status_code == 200
    first.shot.refresh_from_db()
    assert first.shot.selected_take_id == second.pk


def test_two_processes_reporting_at_once_both_keep_their_log_lines():
    from tests.factories import GenerationFactory

    take = GenerationFactory(state=Generation.State.IN_PROGRESS, progress=0.2, logs=["queued"])
    # Two copies of one row, as a worker and a reconciler each hold theirs.
    worker, reconciler = (Generation.objects.get(pk=take.pk) for _ in range(2))
    assert worker.report(progress=0.6, log="rendering frame 40")
    assert reconciler.report(progress=0.4, log="still running at the provider")
    take.refresh_from_db()
    assert take.logs == ["queued", "rendering frame 40", "still running at the provider"]
    # The stale copy's lower figure does not take the progress back.
    assert take.progress == pytest.approx(0.6)


def test_a_report_after_the_take_moved_on_writes_nothing():
    from tests.factories import GenerationFactory

    take = GenerationFactory(state=Generation.State.IN_PROGRESS, progress=0.2, logs=[])
    stale = Generation.objects.get(pk=take.pk)
    Generation.objects.filter(pk=take.pk).update(state=Generation.State.FAILED)
    assert not stale.report(progress=0.9, log="late line")
    take.refresh_from_db()
    assert take.logs == []
    assert take.progress == pytest.approx(0.2)
