# Raspberry Pi Pico W sensor node: read the RP2040's temperature sensor (ADC 4), PUT it
# to home/sensors/<id>/temp every INTERVAL_S seconds.
#
# Deep-sleep friendly: each reading is self-contained (WLAN up, one request, WLAN down)
# and machine.deepsleep() resets the board, which runs this file again on wake; where the
# firmware has no deepsleep it falls back to lightsleep in a loop.
import machine
import time

import config
import elastik_micro as em


def device_id():
    if getattr(config, "DEVICE_ID", None):
        return config.DEVICE_ID
    return "".join("%02x" % b for b in machine.unique_id())


def read_celsius():
    volts = machine.ADC(4).read_u16() * 3.3 / 65535
    return 27 - (volts - 0.706) / 0.001721  # RP2040 datasheet, section 4.9.5


def reading(path):
    try:
        em.wifi_connect(config.WIFI_SSID, config.WIFI_PASSWORD, 20000)
        c = em.Client(config.GATEWAY_HOST, config.GATEWAY_PORT, token=config.TOKEN)
        try:
            c.put(path, "%.2f" % read_celsius())
        finally:
            c.close()
        return True
    except em.CoapError as e:
        print("gateway refused:", e.code, e.message)
    except OSError as e:
        print("network:", e)
    return False


def main():
    import network

    path = "sensors/%s/temp" % device_id()
    while True:
        ok = reading(path)
        network.WLAN(network.STA_IF).active(False)  # radio off while sleeping
        pause = config.INTERVAL_S * 1000 if ok else 30000
        time.sleep_ms(100)
        if hasattr(machine, "deepsleep"):
            machine.deepsleep(pause)
        machine.lightsleep(pause)


main()
