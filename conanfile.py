"""Conan 2 recipe for coray, a header-only library: `conan create .` packages this checkout.

It packages the headers (coray::coray). coray's compiled mode (coray::coray_compiled, from
src/coray.cpp with CORAY_COMPILED_LIB) comes with coray's CMake project and its vcpkg port,
not with this package.
"""

import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout
from conan.tools.scm import Version

required_conan_version = ">=2.0"


class CorayConan(ConanFile):
    name = "coray"
    # Kept equal to CORAY_VERSION_* in include/coray/version.hpp by scripts/check_packaging.py.
    version = "0.1.0"
    description = ("Ray's model for C++20, header-only: remote tasks, an immutable "
                   "shared-memory object store and co_await-able object refs, run by worker "
                   "processes.")
    license = "MIT"
    topics = ("ray", "tasks", "actors", "shared-memory", "coroutines", "multiprocessing",
              "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # with_mpi: cluster mode (<coray/mpi.hpp>); coray::coray then carries Open MPI.
    options = {"with_mpi": [True, False]}
    default_options = {"with_mpi": False}
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    @property
    def _compilers_minimum_version(self):
        return {"gcc": "12", "clang": "14"}

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # coray's headers include theirs, so consumers need their include paths too.
        self.requires("boost/1.83.0", transitive_headers=True)
        self.requires("fmt/10.2.1", transitive_headers=True)
        self.requires("concurrentqueue/1.0.4", transitive_headers=True)
        # The dashboard (<coray/dashboard.hpp>): Conan's cpp-httplib is header-only, so a
        # program that includes it builds the server in that one file.
        self.requires("cpp-httplib/0.15.3", transitive_headers=True)
        self.requires("nlohmann_json/3.11.3", transitive_headers=True)
        if self.options.with_mpi:
            self.requires("openmpi/4.1.6", transitive_headers=True, transitive_libs=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration(
                f"{self.ref} needs Linux (memfd_create, futex, signalfd, PR_SET_PDEATHSIG)")
        minimum = self._compilers_minimum_version.get(str(self.settings.compiler))
        if minimum and Version(self.settings.compiler.version) < minimum:
            raise ConanInvalidConfiguration(
                f"{self.ref} needs {self.settings.compiler} >= {minimum} (C++20 coroutines)")

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "coray")
        self.cpp_info.set_property("cmake_target_name", "coray::coray")
        self.cpp_info.system_libs = ["pthread"]
