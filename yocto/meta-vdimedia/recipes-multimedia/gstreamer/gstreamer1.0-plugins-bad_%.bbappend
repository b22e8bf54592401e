# vdimediad needs webrtcbin (webrtc, which pulls in libnice), DTLS-SRTP keying (dtls, srtp), data
# channels (sctp, GStreamer's bundled usrsctp) and software echo cancellation (webrtcdsp).
# webrtc, webrtcdsp, srtp and sctp are off in the default PACKAGECONFIG. The "vdimedia" override
# comes from conf/include/vdimedia-thinclient.inc.
PACKAGECONFIG:append:vdimedia = " dtls sctp srtp webrtc webrtcdsp"
