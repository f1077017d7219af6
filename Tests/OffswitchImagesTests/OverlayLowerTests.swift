import COffswitch
import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchTestSupport
import Testing

/// OCI whiteouts become what overlayfs reads in a lower layer, and the unpacked directories work
/// as one.
@Suite("Whiteouts and overlay lower layers")
struct OverlayLowerTests {
    @Test("A whiteout is a character device 0:0; an opaque marker sets trusted.overlay.opaque=y",
          .enabled(if: isRoot, "needs root: mknod of a whiteout, trusted.* xattrs"))
    func whiteouts() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file(".wh.gone", "", uid: 0, gid: 0)
        tar.file("opaque/.wh..wh..opq", "", uid: 0, gid: 0)
        tar.file("missing/parent/.wh.x", "", uid: 0, gid: 0)
        tar.file("kept", "this layer's", uid: 0, gid: 0)
        tar.file(".wh.kept", "", uid: 0, gid: 0)
        tar.file(".wh.later", "", uid: 0, gid: 0)
        tar.file("later", "replaces the whiteout", uid: 0, gid: 0)
        tar.file(".wh..wh.plnk", "", uid: 0, gid: 0)
        tar.end()
        let layer = scratch.path + "/layer"
        let result = try unpack(try scratch.write("layer.tar", tar.bytes), into: layer)
        #expect(result.entries == 8)

        for whiteout in ["/gone", "/missing/parent/x"] {
            let info = try #require(lstatInfo(layer + whiteout))
            #expect(info.st_mode & S_IFMT == S_IFCHR && info.st_rdev == 0, "\(whiteout)")
        }
        #expect(lstatInfo(layer + "/.wh.gone") == nil)
        #expect(xattr(layer + "/opaque", "trusted.overlay.opaque") == [UInt8(ascii: "y")])
        #expect(listDirectory(layer + "/opaque").isEmpty)
        #expect(readSmallFile(layer + "/kept") == "this layer's")
        #expect(readSmallFile(layer + "/later") == "replaces the whiteout")
        #expect(Set(listDirectory(layer)) == ["gone", "opaque", "missing", "kept", "later"])
    }

    @Test("Two unpacked layers mount as overlay lowers: a whiteout hides the lower file, an opaque directory the lower contents",
          .enabled(if: isRoot, "needs root: mounts overlayfs"))
    func overlayMount() throws {
        let scratch = try Scratch()
        var bottom = TarBuilder()
        bottom.file("keep", "kept", uid: 0, gid: 0)
        bottom.file("gone", "whited out", uid: 0, gid: 0)
        bottom.file("dir/old", "hidden by the opaque marker", uid: 0, gid: 0)
        bottom.file("dir/sub/older", "hidden too", uid: 0, gid: 0)
        bottom.end()
        var top = TarBuilder()
        top.file(".wh.gone", "", uid: 0, gid: 0)
        top.directory("dir/", uid: 0, gid: 0)
        top.file("dir/.wh..wh..opq", "", uid: 0, gid: 0)
        top.file("dir/new", "from the top layer", uid: 0, gid: 0)
        top.end()
        _ = try unpack(try scratch.write("bottom.tar", bottom.bytes), into: scratch.path + "/bottom")
        _ = try unpack(try scratch.write("top.tar", top.bytes), into: scratch.path + "/top")
        let merged = try scratch.directory("merged")
        let upper = try scratch.directory("upper")
        let work = try scratch.directory("work")

        let options = "lowerdir=\(scratch.path)/top:\(scratch.path)/bottom,upperdir=\(upper),workdir=\(work)"
        try #require(ofs_mount("overlay", merged, "overlay", 0, options) == 0, "mount(overlay): errno \(errno)")
        defer { umount2(merged, 0) }
        #expect(readSmallFile(merged + "/keep") == "kept")
        #expect(lstatInfo(merged + "/gone") == nil)
        #expect(listDirectory(merged + "/dir") == ["new"])
        #expect(readSmallFile(merged + "/dir/new") == "from the top layer")
        #expect(Set(listDirectory(merged)) == ["keep", "dir"])
    }
}
