def main(argv):
    raise SystemExit("not yet")
