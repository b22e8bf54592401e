// vdimedia browser SDK: a drop-in polyfill of the W3C WebRTC (https://www.w3.org/TR/webrtc/)
// and Media Capture (https://www.w3.org/TR/mediacapture-streams/) APIs whose objects live in
// the endpoint engine `vdimediad`, reached through `vdimedia-bridge` (docs/protocol.md).

export { VERSION } from './version.js';
export { install, uninstall, status, DEFAULT_BRIDGE_URL, DEFAULT_TIMEOUT_MS } from './install.js';
export { RTCPeerConnection } from './peerconnection.js';
export { RTCSessionDescription, RTCIceCandidate } from './description.js';
export {
  RTCRtpTransceiver,
  RTCRtpSender,
  RTCRtpReceiver,
  RTCStatsReport,
  RTCPeerConnectionIceEvent,
  RTCTrackEvent,
} from './rtp.js';
export { MediaStream, MediaStreamTrack, MediaStreamTrackEvent, MediaDeviceInfo } from './media.js';
export { OverconstrainedError } from './errors.js';
export { RTCDTMFSender, RTCDTMFToneChangeEvent } from './dtmf.js';
export { playRingtone, Ringtone, MAX_RINGTONE_BYTES } from './ringtone.js';
