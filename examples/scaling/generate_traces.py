#!/usr/bin/env python3
"""Writes the scaling traces of examples/scaling/ (deterministic: fixed seed).

- diurnal-week.csv: 7 days at 5-minute resolution. A daily curve (quiet
  night, morning rise, midday plateau, evening peak), weekend days at 60 %,
  +-5 % noise, and a one-off 2.5x spike for 30 minutes on Wednesday at 15:00.
- ramp.csv: 6 hours at 1-minute resolution, 200 -> 3000 req/s linearly.
- flash-crowd.csv: 2 days at 5-minute resolution of the same daily curve,
  with an unannounced 5x crowd on day 2 at 10:00 for 20 minutes.

Values are total requests per second; run from the repository root:
python3 examples/scaling/generate_traces.py
"""
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def daily(hour):
    """Requests per second over one day (hour in 0..24)."""
    night = 150.0
    # Morning rise 06:00-10:00, plateau, evening peak at 20:00.
    morning = 1400.0 / (1.0 + math.exp(-(hour - 8.0) * 1.6))
    evening = 900.0 * math.exp(-((hour - 20.0) ** 2) / (2 * 1.5**2))
    late = 1.0 / (1.0 + math.exp((hour - 22.5) * 1.8))
    return night + (morning + evening) * late


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        f.write("t_s,rps\n")
        for t, v in rows:
            f.write(f"{t},{v:.1f}\n")


def main():
    rng = random.Random(20261130)
    rows = []
    for i in range(7 * 24 * 12):
        t = i * 300
        day, hour = divmod(t / 3600.0, 24)
        level = daily(hour) * (0.6 if day >= 5 else 1.0)
        if day == 2 and 15.0 <= hour < 15.5:
            level *= 2.5
        rows.append((t, level * (1.0 + rng.uniform(-0.05, 0.05))))
    write("diurnal-week.csv", rows)

    write("ramp.csv", [(t * 60, 200.0 + 2800.0 * t / 360.0) for t in range(361)])

    rows = []
    for i in range(2 * 24 * 12):
        t = i * 300
        day, hour = divmod(t / 3600.0, 24)
        level = daily(hour)
        if day == 1 and 10.0 <= hour < 10.0 + 20 / 60:
            level *= 5.0
        rows.append((t, level * (1.0 + rng.uniform(-0.05, 0.05))))
    write("flash-crowd.csv", rows)


if __name__ == "__main__":
    main()
