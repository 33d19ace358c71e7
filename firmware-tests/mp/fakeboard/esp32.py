# Stand-in for the ESP32's `esp32` module on the unix port.
def mcu_temperature():
    return 41
