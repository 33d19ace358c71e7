# Copy to the board as config.py (tools/deploy.py writes it for you from its options).
WIFI_SSID = "my-network"
WIFI_PASSWORD = "my-password"
GATEWAY_HOST = "192.168.1.10"  # the machine running `python -m gateway run`
GATEWAY_PORT = 5683
TOKEN = "write-token"  # sent in CoAP option 65001; never printed
INTERVAL_S = 60  # seconds between readings (deep sleep in between)
DEVICE_ID = None  # None: derived from machine.unique_id()
ADC_PIN = 26  # async_main.py: GPIO 26 is ADC0 on the Pico W; use 34 on an ESP32
LED_PIN = "LED"  # async_main.py: the Pico W's LED; a GPIO number on ESP32 boards
