"""``python -m app``; the ``chatbot`` script calls ``run`` too."""

import signal


def run() -> None:
    """Run ``chatbot``. A Ctrl-C while the command line's libraries import (under a second)
    is held until they have, then ends it as a Ctrl-C does inside a command, in one line,
    where it raised inside whichever import it met and printed that traceback."""
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        from app.cli import main
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:  # ended by the helper that ends every command's Ctrl-C
        from app.commands.common import ctrl_c_ends_with, one_line_errors

        @one_line_errors
        def end() -> None:
            with ctrl_c_ends_with("nothing was done"):
                raise KeyboardInterrupt

        end()
    main()


if __name__ == "__main__":
    run()
