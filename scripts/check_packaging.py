#!/usr/bin/env python3
"""Checks the vcpkg port and the Conan recipe without vcpkg or Conan installed.

- packaging/vcpkg/ports/coray/vcpkg.json has what vcpkg requires of a port (name matching
  its folder, a version, description, license, dependencies), its version is coray's, and the
  folder holds portfile.cmake and usage;
- conanfile.py and test_package/conanfile.py byte-compile, and the recipe's name, version and
  package type are coray's.

coray's version is CORAY_VERSION_MAJOR/MINOR/PATCH in include/coray/version.hpp.
Prints one line per problem and exits 1 if there is any.
"""

import ast
import json
import pathlib
import py_compile
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PORT_DIR = ROOT / "packaging" / "vcpkg" / "ports" / "coray"
VCPKG_VERSION_FIELDS = ("version", "version-string", "version-semver", "version-date")
VCPKG_DEPENDENCIES = {"boost-interprocess", "boost-pfr", "fmt", "concurrentqueue",
                      "cpp-httplib", "nlohmann-json", "vcpkg-cmake", "vcpkg-cmake-config"}
CONAN_DEPENDENCIES = {"boost", "fmt", "concurrentqueue", "cpp-httplib", "nlohmann_json"}


def coray_version():
    text = (ROOT / "include" / "coray" / "version.hpp").read_text(encoding="utf-8")
    return ".".join(re.search(rf"#define CORAY_VERSION_{part} (\d+)", text).group(1)
                    for part in ("MAJOR", "MINOR", "PATCH"))


def check_vcpkg(version, problems):
    where = PORT_DIR.relative_to(ROOT) / "vcpkg.json"
    try:
        manifest = json.loads((PORT_DIR / "vcpkg.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{where}: {e}")
        return
    if manifest.get("name") != PORT_DIR.name:
        problems.append(f"{where}: name {manifest.get('name')!r} is not the port folder's "
                        f"name {PORT_DIR.name!r}")
    versions = [field for field in VCPKG_VERSION_FIELDS if field in manifest]
    if len(versions) != 1:
        problems.append(f"{where}: needs exactly one of {', '.join(VCPKG_VERSION_FIELDS)}")
    elif manifest[versions[0]] != version:
        problems.append(f"{where}: {versions[0]} {manifest[versions[0]]!r} is not coray's "
                        f"version {version!r} (include/coray/version.hpp)")
    for field in ("description", "license"):
        if not manifest.get(field):
            problems.append(f"{where}: no {field}")
    dependencies = manifest.get("dependencies")
    if not isinstance(dependencies, list):
        problems.append(f"{where}: dependencies must be a list")
    else:
        names = {d if isinstance(d, str) else d.get("name") for d in dependencies}
        for missing in sorted(VCPKG_DEPENDENCIES - names):
            problems.append(f"{where}: dependencies lack {missing}")
    for name in ("portfile.cmake", "usage"):
        if not (PORT_DIR / name).is_file():
            problems.append(f"{PORT_DIR.relative_to(ROOT)}: no {name}")


def recipe_attributes(path):
    """The string class attributes of the ConanFile subclass in `path`, read without Conan."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", None) == "ConanFile" for base in node.bases):
            return {target.id: statement.value.value
                    for statement in node.body if isinstance(statement, ast.Assign)
                    for target in statement.targets
                    if isinstance(target, ast.Name) and isinstance(statement.value, ast.Constant)}
    return None


def check_conan(version, problems):
    recipes = [ROOT / "conanfile.py", ROOT / "test_package" / "conanfile.py"]
    with tempfile.TemporaryDirectory() as scratch:  # no __pycache__ in the source tree
        for recipe in recipes:
            try:
                py_compile.compile(str(recipe), cfile=str(pathlib.Path(scratch) / "recipe.pyc"),
                                   doraise=True)
            except (OSError, py_compile.PyCompileError) as e:
                problems.append(f"{recipe.relative_to(ROOT)}: {e}")
                return
    attributes = recipe_attributes(recipes[0])
    if attributes is None:
        problems.append("conanfile.py: no class deriving from ConanFile")
        return
    expected = {"name": "coray", "version": version, "package_type": "header-library"}
    for key, value in expected.items():
        if attributes.get(key) != value:
            problems.append(f"conanfile.py: {key} is {attributes.get(key)!r}, expected {value!r}")
    text = recipes[0].read_text(encoding="utf-8")
    for dependency in sorted(CONAN_DEPENDENCIES):
        if not re.search(rf'self\.requires\(\s*"{dependency}/', text):
            problems.append(f"conanfile.py: does not require {dependency}")


def main():
    version = coray_version()
    problems = []
    check_vcpkg(version, problems)
    check_conan(version, problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
