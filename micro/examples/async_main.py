# Several tasks on one board (any MicroPython with asyncio and WLAN): one task samples a
# sensor every second, another PUTs the average every INTERVAL_S seconds, a third blinks
# the LED; AsyncClient keeps the network waits from blocking the other tasks.
import asyncio

import machine

import config
import elastik_micro as em
from elastik_micro_async import AsyncClient

samples = []


async def sample():
    adc = machine.ADC(machine.Pin(getattr(config, "ADC_PIN", 26)))
    while True:
        samples.append(adc.read_u16())
        if len(samples) > 120:  # bounded: two minutes of one-second samples
            samples.pop(0)
        await asyncio.sleep(1)


async def report(c, path):
    while True:
        await asyncio.sleep(config.INTERVAL_S)
        if samples:
            try:
                await c.put(path, "%d" % (sum(samples) // len(samples)))
            except (em.CoapError, OSError) as e:
                print("report failed:", e)


async def blink():
    led = machine.Pin(getattr(config, "LED_PIN", "LED"), machine.Pin.OUT)
    while True:
        led.value(not led.value())
        await asyncio.sleep_ms(500)


async def main():
    em.wifi_connect(config.WIFI_SSID, config.WIFI_PASSWORD, 20000)
    c = AsyncClient(config.GATEWAY_HOST, config.GATEWAY_PORT, token=config.TOKEN)
    ident = config.DEVICE_ID or "".join("%02x" % b for b in machine.unique_id())
    await asyncio.gather(sample(), report(c, "sensors/%s/adc" % ident), blink())


asyncio.run(main())
