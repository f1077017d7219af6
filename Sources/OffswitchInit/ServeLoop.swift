import COffswitch
import Glibc
import OffswitchCore

/// PID 1's event loop: requests from the host, SIGCHLD (reaping), SIGTERM (shutdown) and
/// command deadlines, all in one poll(2).
struct ServeLoop {
    let control: Int32
    let signals: Int32
    let order: SetupOrder
    private var commands = CommandTable()

    init(control: Int32, signals: Int32, order: SetupOrder) {
        self.control = control
        self.signals = signals
        self.order = order
    }

    mutating func run() -> Never {
        while true {
            var fds = [pollfd(fd: control, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            let timeout = commands.millisecondsUntilNextDeadline(now: monotonicNanoseconds())
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR { _exit(70) }
            if fds[1].revents != 0 { drainSignals() }
            if fds[0].revents & Int16(POLLIN) != 0 {
                serveOneRequest()
            } else if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
                // The host is gone: nobody can observe or end this sandbox any more.
                _exit(0)
            }
            commands.killExpired(now: monotonicNanoseconds())
        }
    }

    private mutating func serveOneRequest() {
        let next: InitProcess.Received?
        do throws(OffswitchError) {
            next = try InitProcess.receiveRequest()
        } catch {
            return  // a malformed request is dropped; its descriptors were closed
        }
        // EOF: the host is gone, and nobody can observe or end this sandbox any more.
        guard let received = next else { _exit(0) }
        let fds = received.descriptors
        switch received.request {
        case .setup:
            break
        case .exec(let exec):
            commands.start(exec, stdin: fds[0], stdout: fds[1], stderr: fds[2], status: fds[3])
        case .openFile(let file):
            openFile(file, reply: fds[0])
        case .openPTY:
            openPTY(reply: fds[0])
        }
    }

    private func openFile(_ order: FileOrder, reply: Int32) {
        defer { close(reply) }
        let mode = order.mode == .write ? OFS_FILE_WRITE : OFS_FILE_READ
        let pid = order.identity.groups.map { gid_t($0) }.withUnsafeBufferPointer { groups in
            var identity = ofs_identity(uid: order.identity.uid, gid: order.identity.gid, groups: groups.baseAddress,
                                        group_count: Int32(groups.count), capabilities: order.identity.capabilities)
            return ofs_file_open(reply, order.path, mode, order.createMode, &identity)
        }
        if pid < 0 {
            var failure = ofs_file_reply(stage: Int32(OFS_STAGE_OPEN.rawValue), err: -pid)
            _ = ofs_send_with_fds(reply, &failure, MemoryLayout<ofs_file_reply>.size, nil, 0)
        }
        // The helper is reaped with every other child on SIGCHLD.
    }

    private func openPTY(reply: Int32) {
        defer { close(reply) }
        var master: Int32 = -1, slave: Int32 = -1
        var answer = ofs_file_reply(stage: 0, err: 0)
        if ofs_openpty(&master, &slave) != 0 {
            answer = ofs_file_reply(stage: Int32(OFS_STAGE_OPEN.rawValue), err: errno)
            _ = ofs_send_with_fds(reply, &answer, MemoryLayout<ofs_file_reply>.size, nil, 0)
            return
        }
        let pair = [master, slave]
        _ = ofs_send_with_fds(reply, &answer, MemoryLayout<ofs_file_reply>.size, pair, 2)
        close(master)
        close(slave)
    }

    private mutating func drainSignals() {
        var signo: Int32 = 0, sender: Int32 = 0, code: Int32 = 0
        var uid: UInt32 = 0
        while ofs_signalfd_next(signals, &signo, &sender, &uid, &code) == 1 {
            switch signo {
            case SIGTERM:
                // A real shutdown: say who did it, then exit. The kernel kills every other
                // process of the namespace as PID 1 goes.
                InitProcess.report(.shutdown(ShutdownInfo(signal: signo, senderPID: sender, senderUID: uid,
                                                          unixNanoseconds: unixNanoseconds(), code: code)))
                _exit(128 + SIGTERM)
            case SIGCHLD:
                commands.reapAll()
            default:
                break
            }
        }
    }
}
