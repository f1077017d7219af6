import Glibc
import OffswitchCore

/// Facts about the host, checked once per process.
enum HostEnvironment {
    static let shared: Result<Void, OffswitchError> = {
        do throws(OffswitchError) { try HostCheck.verify(); return .success(()) } catch { return .failure(error) }
    }()

    static let cgroupMounts: Result<CgroupMounts, OffswitchError> = {
        do throws(OffswitchError) { return .success(try CgroupMounts.discover()) } catch { return .failure(error) }
    }()
}
