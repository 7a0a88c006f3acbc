#!/bin/sh
# As the official redis image does: a server started without a config file answers the
# other containers (protected mode off; compose's network is not published), unless told otherwise.
if [ "${1:-}" = redis-server ]; then
    case " $* " in
    *" --protected-mode "*) ;;
    *) set -- "$@" --protected-mode no ;;
    esac
fi
exec "$@"
