"""The embedded default: an offline previz renderer standing in for a Seedance endpoint.

It renders a real MP4 of the exact size, frame count and frame rate the endpoint would deliver,
so budgets, chains and exports work without keys. Its takes are labelled as previews.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from storyboard import previz
from storyboard.providers.base import Job, Rendered, VideoProvider


class LocalProvider(VideoProvider):
    inline = True
    simulated = True
    label = "Offline preview renderer"

    def render(self, job: Job, out: Path, *, progress: Callable[[float], None]) -> Rendered:
        # An optional pretend queue, so the live status can be seen (and tested) offline.
        delay = float(self.options.get("queue_delay", 0))
        if delay:
            steps = max(1, int(delay * 4))
            for _ in range(steps):
                time.sleep(delay / steps)
                progress(0)
        args = job.arguments
        images = job.files.get("image_url", [])
        ends = job.files.get("end_image_url", [])
        seed = args.get("seed")
        if seed is None or seed == -1:
            seed = int(job.uid.replace("-", "")[:8], 16)
        spec = previz.RenderSpec(
            width=job.width, height=job.height, frames=job.frames,
            prompt=args.get("prompt", ""), seed=seed,
            audio=bool(args.get("generate_audio", False)), title=job.title,
            start_image=images[0] if images else None,
            end_image=ends[0] if ends else None,
            references=tuple([*job.files.get("image_urls", []),
                              *job.files.get("video_urls", [])]),
        )
        result = previz.render(spec, out, progress=progress)
        return Rendered(path=result.path, width=result.width, height=result.height,
                        frames=result.frames, duration=result.duration, seed=seed)
