"""Counting calls in sliding windows, as Defender counts them (shared by the budget and cluster tests)."""


def busiest_window(times, seconds):
    """The most calls in any sliding window of ``seconds`` (half-open, as the API counts)."""
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best
