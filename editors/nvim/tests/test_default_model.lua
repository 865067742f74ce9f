-- The demo a user sees: the plugin with no `model` named, so the server loads its default model
-- (SmolLM2-135M-Instruct with our adapter, base weights linked in by run.sh), asked for a rename
-- it answers exactly right under greedy decoding. Nothing is faked: the buffer must end as
-- exactly that edit. The other tests use the tiny model, which loads in a second.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
H.setup({ init_options = { threads = 1 } }, true)

local HEAD = { 'from dataclasses import dataclass', '', '', '@dataclass', 'class Person:', '    name: str',
  '    age: int', '', '' }
local TAIL = { '', '', 'print(mean_age([Person("Ada", 36), Person("Alan", 41)]))' }
local FN = {
  'def mean_age(people):',
  '    total = 0',
  '    count = 0',
  '    for person in people:',
  '        total += person.age',
  '        count += 1',
  '    if count == 0:',
  '        return 0.0',
  '    return total / count',
}
local RENAME = 'Rename `count` to `num`.'
-- The rename done right: every `count`, and nothing else.
local ANSWER = vim.tbl_map(function(line)
  return (line:gsub('%f[%w_]count%f[^%w_]', 'num'))
end, FN)

local function file(fn)
  return vim.iter({ HEAD, fn, TAIL }):flatten():totable()
end

H.run({
  { 'the default model renames exactly, streamed through the plugin; one undo restores', function()
    local buf = H.open('people.py', file(FN))
    vim.ui.input = function(_, on_confirm)
      on_confirm(RENAME)
    end
    local first = #HEAD + 1
    -- Loading the default model takes about 20 s on an idle core, more on a busy one.
    H.done = nil
    vim.cmd(('%d,%dCopySpecRefine'):format(first, first + #FN - 1))
    local done = H.wait_done(120000, 'the default model to load and answer')
    assert(not done.err, vim.inspect(done.err))
    H.eq(file(ANSWER), H.lines(buf), 'the buffer after the rename')
    H.eq(table.concat(ANSWER, '\n'), done.result.text, 'the result text')
    vim.cmd('silent undo')
    H.eq(file(FN), H.lines(buf), 'the buffer after one undo')
  end },
})
