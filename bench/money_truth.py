"""How much of what the provider charged reaches the ledger, old way against new.

For every endpoint × resolution × aspect ratio × duration the catalogue offers, a delivery is
what tests/emulators/delivery.py (written from the documents) makes plausible: the documented
1280×720 at 720p 16:9, elsewhere the short side kept and padded to 16-pixel macroblocks, and
Seedance 1.0's extra frame. The charge is the token formula on that delivery.

- naive (before issue #8): hold at Seedance's published sizes and whole seconds, capture
  min(charge, hold): the difference silently vanished.
- now: hold at the safe upper bound (catalogue.PIXEL_SIZES), capture the measured charge in
  full, with any excess as its own overrun line.

Run: .venv/bin/python -m bench.money_truth
"""

from __future__ import annotations

import os
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyboard.settings")
    import django

    django.setup()
    from storyboard import catalogue
    from tests.emulators import delivery

    started = time.perf_counter()
    rows = {"naive": _Totals(), "now": _Totals()}
    worst = ("", 0, 0)
    for endpoint, spec in catalogue.ENDPOINTS.items():
        for resolution in spec.resolutions:
            for ratio in catalogue.ASPECT_RATIOS:
                for duration in spec.durations:
                    arguments = {"resolution": resolution, "aspect_ratio": ratio,
                                 "duration": duration}
                    width, height = delivery.delivered_size(endpoint, arguments)
                    frames = delivery.delivered_frames(endpoint, arguments)
                    charge = catalogue.price_micros(endpoint=endpoint, width=width,
                                                    height=height, frames=frames)
                    naive_hold = _naive_hold(catalogue, endpoint, resolution, ratio, duration)
                    rows["naive"].add(charge=charge, hold=naive_hold,
                                      ledger=min(charge, naive_hold))
                    hold = catalogue.estimate(endpoint=endpoint, resolution=resolution,
                                              aspect_ratio=ratio, duration=duration).micros
                    rows["now"].add(charge=charge, hold=hold, ledger=charge)
                    lost = charge - min(charge, naive_hold)
                    if lost > worst[2]:
                        length = duration if duration == "auto" else f"{duration} s"
                        worst = (f"{endpoint} {resolution} {ratio} {length}", charge, lost)
    elapsed = time.perf_counter() - started
    print(f"{rows['naive'].count} combinations, {elapsed:.2f} s\n")
    print("| approach | charged by provider | on the ledger | lost | takes under-counted "
          "| takes held too little | hold ÷ charge |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, totals in rows.items():
        print(f"| {name} | ${totals.charge / 1e6:,.2f} | ${totals.ledger / 1e6:,.2f} "
              f"| ${(totals.charge - totals.ledger) / 1e6:,.2f} | {totals.undercounted} "
              f"| {totals.short_holds} | {totals.hold / totals.charge:.3f}× |")
    print(f"\nWorst single take the naive way: {worst[0]}: charged {worst[1]:,} µ$, "
          f"{worst[2]:,} µ$ never recorded.")
    example = {"resolution": "720p", "aspect_ratio": "21:9", "duration": "6"}
    endpoint = "bytedance/seedance-2.0/fast/text-to-video"
    width, height = delivery.delivered_size(endpoint, example)
    charge = catalogue.price_micros(endpoint=endpoint, width=width, height=height,
                                    frames=delivery.delivered_frames(endpoint, example))
    naive_hold = _naive_hold(catalogue, endpoint, "720p", "21:9", "6")
    print(f"The issue's example (2.0 fast, 720p 21:9, 6 s, delivered {width}×{height}): "
          f"charged {charge:,} µ$; naive ledger {min(charge, naive_hold):,} µ$; "
          f"now {charge:,} µ$.")


class _Totals:
    def __init__(self) -> None:
        self.count = self.charge = self.hold = self.ledger = 0
        self.undercounted = self.short_holds = 0

    def add(self, *, charge: int, hold: int, ledger: int) -> None:
        self.count += 1
        self.charge += charge
        self.hold += hold
        self.ledger += ledger
        self.undercounted += ledger < charge
        self.short_holds += hold < charge


def _naive_hold(catalogue, endpoint: str, resolution: str, ratio: str, duration: str) -> int:
    sizes = catalogue.PUBLISHED_SIZES[resolution]
    width, height = (max(sizes.values(), key=lambda wh: wh[0] * wh[1]) if ratio == "auto"
                     else sizes[ratio])
    seconds = catalogue.WORST_CASE_SECONDS if duration == "auto" else int(duration)
    return catalogue.price_micros(endpoint=endpoint, width=width, height=height,
                                  frames=seconds * catalogue.FPS)


if __name__ == "__main__":
    main()
