/**
 * Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
 * Names follow the spec with the NBD_ prefix dropped; values are exact.
 */

// Handshake magics.
export const NBDMAGIC = 0x4e42444d41474943n; // 'NBDMAGIC'
export const IHAVEOPT = 0x49484156454f5054n; // 'IHAVEOPT'
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const FLAG_HAS_FLAGS = 1 << 0;
export const FLAG_READ_ONLY = 1 << 1;
export const FLAG_SEND_FLUSH = 1 << 2;
export const FLAG_SEND_FUA = 1 << 3;
export const FLAG_ROTATIONAL = 1 << 4;
export const FLAG_SEND_TRIM = 1 << 5;
export const FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const FLAG_SEND_DF = 1 << 7;
export const FLAG_CAN_MULTI_CONN = 1 << 8;
export const FLAG_SEND_RESIZE = 1 << 9;
export const FLAG_SEND_CACHE = 1 << 10;
export const FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;

// Option replies.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
const repErr = (n: number) => (0x80000000 | n) >>> 0;
export const REP_ERR_UNSUP = repErr(1);
export const REP_ERR_POLICY = repErr(2);
export const REP_ERR_INVALID = repErr(3);
export const REP_ERR_PLATFORM = repErr(4);
export const REP_ERR_TLS_REQD = repErr(5);
export const REP_ERR_UNKNOWN = repErr(6);
export const REP_ERR_SHUTDOWN = repErr(7);
export const REP_ERR_BLOCK_SIZE_REQD = repErr(8);
export const REP_ERR_TOO_BIG = repErr(9);

// NBD_REP_INFO types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Transmission: requests.
export const REQUEST_MAGIC = 0x25609513;
export const REQUEST_SIZE = 28;
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

// Transmission: replies.
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const STRUCTURED_REPLY_SIZE = 20;
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = (1 << 15) | 1;
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2;

// base:allocation flags.
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
export const BASE_ALLOCATION = 'base:allocation';
/** The context id we hand out for base:allocation (ids are opaque to clients). */
export const BASE_ALLOCATION_ID = 1;

// Error values (not host errno: the spec fixes these numbers).
export const EPERM = 1;
export const EIO = 5;
export const ENOMEM = 12;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const ENOTSUP = 95;
export const ESHUTDOWN = 108;

/** Longest string the spec allows (export names, queries, messages). */
export const MAX_STRING = 4096;
