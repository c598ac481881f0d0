"""Small fakes shared by the unit tests (no I/O of their own)."""


class FakeClock:
    """A clock the test moves: ``clock()`` reads it, ``clock.sleep(s)`` moves it on by ``s``."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
