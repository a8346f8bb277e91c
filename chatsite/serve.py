"""`python -m chatsite.serve [daphne's options] chatsite.asgi:application`: daphne's command
line, with its reactor on the event loop `chatsite.event_loop` chooses (uvloop by default).

daphne makes its event loop when `daphne.server` is first imported, which its own command
line does before anything of ours runs; this starts it after the loop policy is set.
"""

from chatsite import event_loop


def main() -> None:
    event_loop.install()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
