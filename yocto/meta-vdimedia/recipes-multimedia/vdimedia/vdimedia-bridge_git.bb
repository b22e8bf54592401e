SUMMARY = "vdimedia VDA-side bridge: page SDK WebSocket to the virtual channel"
DESCRIPTION = "vdimedia-bridge runs inside a Linux virtual desktop: the softphone page's SDK \
               connects to it over a local WebSocket, and it re-frames the messages onto the \
               remoting protocol's virtual channel to vdimediad on the thin client."

require vdimedia.inc

inherit systemd useradd

do_compile() {
    oe_cargo_build -p vdimedia-bridge --bins
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/vdimedia-bridge ${D}${bindir}/vdimedia-bridge

    # Packaged defaults; /etc/vdimedia/vdimedia-bridge.toml overrides them.
    install -d ${D}${nonarch_libdir}/vdimedia
    install -m 0644 ${S}/packaging/config/vdimedia-bridge.toml ${D}${nonarch_libdir}/vdimedia/

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/packaging/systemd/system/vdimedia-bridge.service ${D}${systemd_system_unitdir}/

    install -d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/packaging/sysusers.d/vdimedia-bridge.conf ${D}${nonarch_libdir}/sysusers.d/
}

SYSTEMD_SERVICE:${PN} = "vdimedia-bridge.service"

# Same user as packaging/sysusers.d/vdimedia-bridge.conf; the unit's StateDirectory= is its home.
USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir ${localstatedir}/lib/vdimedia-bridge \
                       --shell ${base_sbindir}/nologin --user-group vdimedia-bridge"

FILES:${PN} += "${nonarch_libdir}/sysusers.d/vdimedia-bridge.conf \
                ${nonarch_libdir}/vdimedia/vdimedia-bridge.toml"
