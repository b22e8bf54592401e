# opusenc/opusdec (Opus is the first codec vdimediad offers) are off in the default PACKAGECONFIG.
# alsasrc/alsasink follow DISTRO_FEATURES "alsa" as before.
PACKAGECONFIG:append:vdimedia = " opus"
