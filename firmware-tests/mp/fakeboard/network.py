# Stand-in for MicroPython's `network` on the unix port. FAKE_WIFI (environment) picks the
# behaviour: "ok" joins at once, "slow" after three status polls, "never" stays joining.
import os

STA_IF = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 3
STAT_WRONG_PASSWORD = -3


class _Iface:
    def __init__(self):
        self._mode = os.getenv("FAKE_WIFI") or "ok"
        self._active = False
        self._polls = -1

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = on
        if not on:
            self._polls = -1

    def connect(self, ssid, password):
        if not self._active:
            raise OSError("wifi inactive")
        print("connect", ssid)  # never the password
        self._polls = 0

    def isconnected(self):
        if self._polls < 0:
            return False
        self._polls += 1
        if self._mode == "ok":
            return True
        if self._mode == "slow":
            return self._polls > 3
        return False

    def status(self):
        return STAT_GOT_IP if self.isconnected() else STAT_CONNECTING

    def ifconfig(self):
        return ("10.0.0.42", "255.255.255.0", "10.0.0.1", "10.0.0.1")


_sta = _Iface()


def WLAN(iface):  # like the firmware: one interface object per interface
    return _sta
