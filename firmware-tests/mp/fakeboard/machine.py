# Stand-in for MicroPython's `machine` on the unix port (no real board can run in CI):
# fixed readings, and deepsleep/lightsleep end the program so examples run one cycle.
import sys


def unique_id():
    return b"\xfa\xce\x00\x01"


class Pin:
    OUT = 1
    IN = 0

    def __init__(self, ident, mode=0):
        self.ident = ident
        self._v = 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0


class ADC:
    def __init__(self, ident):
        self.ident = ident

    def read_u16(self):
        return 14000  # about 23 degrees C through the RP2040 formula


def deepsleep(ms=0):
    print("deepsleep", ms)
    sys.exit(0)


def lightsleep(ms=0):
    print("lightsleep", ms)
    sys.exit(0)
