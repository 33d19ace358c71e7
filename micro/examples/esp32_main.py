# ESP32 sensor node: wake, read, PUT the reading to home/sensors/<id>/temp, deep sleep.
#
# Deep-sleep friendly: every wake is a fresh boot that runs this file once, so nothing
# is kept in RAM between readings. Deploy: python -m tools.deploy --board esp32 ...
# Sensor: a DHT22 on GPIO 4 when present, else the chip's internal temperature sensor.
import machine
import time

import config
import elastik_micro as em


def device_id():
    if getattr(config, "DEVICE_ID", None):
        return config.DEVICE_ID
    return "".join("%02x" % b for b in machine.unique_id())


def read_celsius():
    try:
        import dht

        d = dht.DHT22(machine.Pin(4))
        d.measure()
        return d.temperature()
    except (ImportError, OSError):
        import esp32

        if hasattr(esp32, "mcu_temperature"):
            return esp32.mcu_temperature()
        return (esp32.raw_temperature() - 32) / 1.8  # older firmware: Fahrenheit


def main():
    sleep_ms = config.INTERVAL_S * 1000
    try:
        em.wifi_connect(config.WIFI_SSID, config.WIFI_PASSWORD, 20000)
        c = em.Client(config.GATEWAY_HOST, config.GATEWAY_PORT, token=config.TOKEN)
        try:
            c.put("sensors/%s/temp" % device_id(), "%.2f" % read_celsius())
        finally:
            c.close()
    except em.CoapError as e:
        print("gateway refused:", e.code, e.message)
    except OSError as e:
        print("network:", e)
        sleep_ms = min(sleep_ms, 30000)  # retry sooner when the network was down
    time.sleep_ms(100)  # let the UART flush
    machine.deepsleep(sleep_ms)


main()
