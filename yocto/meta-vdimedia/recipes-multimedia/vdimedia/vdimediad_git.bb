SUMMARY = "vdimedia endpoint media engine: WebRTC calls offloaded from virtual desktops"
DESCRIPTION = "vdimediad runs the calls a softphone page in a virtual desktop places through \
               the vdimedia SDK, with GStreamer webrtcbin and the thin client's own audio \
               devices; only control crosses the remoting protocol's virtual channel. \
               vdimediactl checks the installation and talks to a running daemon."

require vdimedia.inc

# pkg-config modules the gstreamer-rs and alsa crates link against: gstreamer-1.0,
# gstreamer-sdp-1.0 (plugins-base), gstreamer-webrtc-1.0 (plugins-bad) and alsa. The alsa crate
# is not optional in the daemon, so alsa-lib is needed with either PACKAGECONFIG.
DEPENDS += "alsa-lib \
            glib-2.0 \
            gstreamer1.0 \
            gstreamer1.0-plugins-bad \
            gstreamer1.0-plugins-base"

inherit features_check systemd
# Only the ALSA kiosk setup has a system user; deferred so PACKAGECONFIG from a bbappend counts.
inherit_defer ${@bb.utils.contains('PACKAGECONFIG', 'alsa', 'useradd', '', d)}

# "vdimedia" turns on the GStreamer and libnice PACKAGECONFIGs the RDEPENDS below need.
REQUIRED_DISTRO_FEATURES = "systemd vdimedia"

# pipewire: a user service + socket for every user's session (systemctl --global), PipeWire
#           devices through pipewiresrc/pipewiresink, default devices from pw-metadata.
# alsa:     a system service + socket for single-purpose kiosks, running as the "vdimedia" user
#           in group "audio", ALSA devices through alsasrc/alsasink.
# Exactly one of them: both install a vdimediad.socket for the same virtual channel.
PACKAGECONFIG ??= "pipewire"
PACKAGECONFIG[pipewire] = ",,,gstreamer1.0-pipewire pipewire pipewire-tools wireplumber,,alsa"
PACKAGECONFIG[alsa] = ",,,gstreamer1.0-plugins-base-alsa,alsa-utils,pipewire"

do_compile() {
    oe_cargo_build -p vdimediad --bins
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/vdimediad ${D}${bindir}/vdimediad
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/vdimediactl ${D}${bindir}/vdimediactl

    # Packaged defaults; /etc/vdimedia/vdimediad.toml overrides them.
    install -d ${D}${nonarch_libdir}/vdimedia
    install -m 0644 ${S}/packaging/config/vdimediad.toml ${D}${nonarch_libdir}/vdimedia/

    if ${@bb.utils.contains('PACKAGECONFIG', 'pipewire', 'true', 'false', d)}; then
        install -d ${D}${systemd_user_unitdir}
        install -m 0644 ${S}/packaging/systemd/user/vdimediad.service ${D}${systemd_user_unitdir}/
        install -m 0644 ${S}/packaging/systemd/user/vdimediad.socket ${D}${systemd_user_unitdir}/
    fi
    if ${@bb.utils.contains('PACKAGECONFIG', 'alsa', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/packaging/systemd/system/vdimediad.service ${D}${systemd_system_unitdir}/
        install -m 0644 ${S}/packaging/systemd/system/vdimediad.socket ${D}${systemd_system_unitdir}/
        install -d ${D}${nonarch_libdir}/sysusers.d
        install -m 0644 ${S}/packaging/sysusers.d/vdimedia.conf ${D}${nonarch_libdir}/sysusers.d/
    fi
}

# The socket is the unit to enable (the services say Also=vdimediad.socket). systemd.bbclass
# finds it among the system units (alsa) or the user units (pipewire, enabled with --global).
SYSTEMD_SERVICE:${PN} = "vdimediad.socket"

# The kiosk's system user, created at rootfs time; packaging/sysusers.d/vdimedia.conf says the
# same for systemd-sysusers.
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent \
                       --shell ${base_sbindir}/nologin --user-group --groups audio vdimedia"

FILES:${PN} += "${nonarch_libdir}/sysusers.d/vdimedia.conf \
                ${nonarch_libdir}/vdimedia/vdimediad.toml \
                ${systemd_user_unitdir}/vdimediad.service \
                ${systemd_user_unitdir}/vdimediad.socket"

# Elements a call loads at run time (the list in daemon/src/control.rs, which
# `vdimediactl check` verifies on the device), by the package that ships them:
#   gstreamer1.0: queue, capsfilter, fakesink
#   plugins-base: audioconvert, audioresample, volume, opusenc/opusdec, audiotestsrc (test tone)
#   plugins-good: rtpbin and friends (rtpmanager), Opus/G.722/G.711 payloaders (rtp), PCMU, PCMA
#   plugins-bad:  webrtcbin, dtlssrtpenc/dec, srtpenc/dec, sctpenc/dec (data channels)
#   libnice:      nicesrc/nicesink (its GStreamer plugin; see the libnice bbappend)
#   gstreamer1.0-plugin-vdimedia: g722enc/g722dec, so no FFmpeg (gstreamer1.0-libav) is needed
RDEPENDS:${PN} += "gstreamer1.0 \
                   gstreamer1.0-plugin-vdimedia \
                   gstreamer1.0-plugins-bad-dtls \
                   gstreamer1.0-plugins-bad-sctp \
                   gstreamer1.0-plugins-bad-srtp \
                   gstreamer1.0-plugins-bad-webrtc \
                   gstreamer1.0-plugins-base-audioconvert \
                   gstreamer1.0-plugins-base-audioresample \
                   gstreamer1.0-plugins-base-audiotestsrc \
                   gstreamer1.0-plugins-base-opus \
                   gstreamer1.0-plugins-base-playback \
                   gstreamer1.0-plugins-base-volume \
                   gstreamer1.0-plugins-good-alaw \
                   gstreamer1.0-plugins-good-mulaw \
                   gstreamer1.0-plugins-good-rtp \
                   gstreamer1.0-plugins-good-rtpmanager \
                   libnice"
# Software echo cancellation (webrtcdsp/webrtcechoprobe) where the device has no hardware AEC.
RRECOMMENDS:${PN} += "gstreamer1.0-plugins-bad-webrtcdsp"
# Ringtones (VdiMedia.playRingtone) in WAV and Ogg; other formats need their own decoders.
RRECOMMENDS:${PN} += "gstreamer1.0-plugins-good-wavparse gstreamer1.0-plugins-base-ogg gstreamer1.0-plugins-base-vorbis"
