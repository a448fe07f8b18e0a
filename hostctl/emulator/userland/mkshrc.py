"""Android's /system/etc/mkshrc, per release: what an interactive `adb shell` sources, so the
prompt is Android's. Texts from AOSP external/mksh/mkshrc: the KitKat one (4.4: ``precmd``
prints ``N|`` after a non-zero exit, prompt ``shell@DEVICE:/ $``) and the one Android 5.0+ ships
(``${|...}`` adds ``N|``; prompt ``DEVICE:/ $``)."""

from __future__ import annotations

KITKAT = r""": ${TERM:=vt100} ${HOME:=/data} ${MKSH:=/system/bin/sh} ${HOSTNAME:=$(getprop ro.product.device)}
: ${SHELL:=$MKSH} ${USER:=$(typeset x=$(id); x=${x#*\(}; print -r -- ${x%%\)*})}
if (( USER_ID )); then PS1='$'; else PS1='#'; fi
function precmd {
	typeset e=$?

	(( e )) && print -n "$e|"
}
PS1='$(precmd)$USER@$HOSTNAME:${PWD:-?} '"$PS1 "
export HOME HOSTNAME MKSH SHELL TERM USER
alias l='ls'
alias la='l -a'
alias ll='l -l'
alias lo='l -a -l'
"""

LOLLIPOP_AND_LATER = r""": ${HOSTNAME:=$(getprop ro.product.device)}
: ${HOSTNAME:=android}
: ${TMPDIR:=/data/local/tmp}
export HOSTNAME TMPDIR

if (( USER_ID )); then PS1='$'; else PS1='#'; fi
PS4='[$EPOCHREALTIME] '; PS1='${|
	local e=$?

	(( e )) && REPLY+="$e|"

	return $e
}$HOSTNAME:${PWD:-?} '"$PS1 "
"""

# Android's mksh is built with MKSHRC_PATH=/system/etc/mkshrc; Debian's reads $ENV instead, so the
# launcher sets ENV for interactive shells and this line takes it away again.
_TRAILER = "unset ENV\n"


def mkshrc(sdk: int) -> str:
    return (KITKAT if sdk < 21 else LOLLIPOP_AND_LATER) + _TRAILER
